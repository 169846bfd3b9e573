"""`mailwright account add|list|passwd|delete`: mailboxes, through the same services as the API."""

from __future__ import annotations

from typing import Annotated

import typer

from mailwright.cli.common import ConfigFile, DatabaseUrl, DataDir, fail
from mailwright.cli.domain import YesOpt, run
from mailwright.directory import passwords, principals
from mailwright.directory.principals import Change, PrincipalSpec
from mailwright.services import Services
from mailwright.storage.models import Domain

app = typer.Typer(no_args_is_help=True, help="Mail accounts")

PasswordOpt = Annotated[str | None, typer.Option("--password", help="Omit to generate one (printed once)")]


@app.command("add")
def add(address: str, password: PasswordOpt = None,
        email: Annotated[list[str] | None, typer.Option("--email", help="Another address (repeatable)")] = None,
        quota: Annotated[int | None, typer.Option(help="Quota in bytes (0 = unlimited)")] = None,
        description: Annotated[str | None, typer.Option()] = None,
        data_dir: DataDir = None, database_url: DatabaseUrl = None, config: ConfigFile = None) -> None:
    """Create an account in the tenant that owns the address's domain."""
    secret = password or passwords.generate_password()

    async def go(svc: Services) -> None:
        domain = address.rpartition("@")[2].strip().lower()
        async with svc.db.read() as s:
            from sqlalchemy import select

            from mailwright.directory.names import normalize_domain
            dom = (await s.execute(select(Domain).where(Domain.name == normalize_domain(domain, field="name"))
                                   )).scalar_one_or_none()
        if dom is None:
            fail(f"domain {domain!r} is not hosted here (mailwright domain add {domain})")
        spec = PrincipalSpec(type="individual", name=address, secrets=[secret], emails=[address, *(email or [])],
                             quota=quota, description=description)
        await principals.create_principal(svc.db, dom.tenant_id, spec,
                                          password_min_length=svc.settings.password_min_length)

    run(data_dir, database_url, config, go)
    print(f"created {address.lower()}")
    if password is None:
        print(f"password: {secret}")


@app.command("list")
def list_(domain: Annotated[str | None, typer.Option(help="Only addresses in this domain")] = None,
          data_dir: DataDir = None, database_url: DatabaseUrl = None, config: ConfigFile = None) -> None:
    """List accounts: name, addresses, used/quota bytes."""

    async def go(svc: Services) -> list[str]:
        async with svc.db.read() as s:
            rows, _ = await principals.list_principals(s, None, ["individual"])
            info = await principals.describe(s, [p.id for p in rows])
        lines = []
        for p in rows:
            emails = info[p.id][0]
            if domain and not any(e.endswith("@" + domain.lower()) for e in emails):
                continue
            lines.append(f"{p.name}\t{','.join(emails)}\t{p.used_bytes}/{p.quota_bytes or 'unlimited'}")
        return lines

    for line in run(data_dir, database_url, config, go):
        print(line)


@app.command("passwd")
def passwd(address: str, password: PasswordOpt = None,
           data_dir: DataDir = None, database_url: DatabaseUrl = None, config: ConfigFile = None) -> None:
    """Replace the account's passwords; the old ones stop working at once."""
    secret = password or passwords.generate_password()

    async def go(svc: Services) -> None:
        await principals.update_principal(svc.db, None, address, [Change("set", "secrets", [secret])],
                                          password_min_length=svc.settings.password_min_length)

    run(data_dir, database_url, config, go)
    print(f"password changed for {address.lower()}")
    if password is None:
        print(f"password: {secret}")


@app.command("delete")
def delete(address: str, yes: YesOpt = False,
           data_dir: DataDir = None, database_url: DatabaseUrl = None, config: ConfigFile = None) -> None:
    """Delete an account (or list) and its mail."""
    if not yes and not typer.confirm(f"Delete {address} and all its mail?"):
        fail("not confirmed")

    async def go(svc: Services) -> None:
        await principals.delete_principal(svc, None, address)

    run(data_dir, database_url, config, go)
    print(f"deleted {address.lower()}")

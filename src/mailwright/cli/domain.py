"""`mailwright domain add|list|delete`: the operator's view of hosted domains (any tenant)."""

from __future__ import annotations

from typing import Annotated

import typer

from mailwright.cli.common import ConfigFile, DatabaseUrl, DataDir, fail, run_with_services, settings_from
from mailwright.directory import domains, tenants
from mailwright.directory.errors import DirectoryError
from mailwright.services import Services

app = typer.Typer(no_args_is_help=True, help="Hosted domains")

TenantOpt = Annotated[str, typer.Option("--tenant", help="Tenant name or id")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation")]


def run(data_dir: object, database_url: object, config: object, fn):  # type: ignore[no-untyped-def]
    """Run `fn(svc)` against the configured store; service errors become one line and exit 1."""
    settings = settings_from(config, data_dir=data_dir, database_url=database_url)  # type: ignore[arg-type]

    async def go(svc: Services):  # type: ignore[no-untyped-def]
        try:
            return await fn(svc)
        except DirectoryError as exc:
            fail(exc.message)

    return run_with_services(settings, go)


async def tenant_id(svc: Services, name: str) -> str:
    async with svc.db.read() as s:
        try:
            return (await tenants.get_tenant(s, name)).id
        except DirectoryError:
            fail(f"tenant {name!r} not found")


@app.command("add")
def add(name: str, tenant: TenantOpt = "default", description: Annotated[str | None, typer.Option()] = None,
        data_dir: DataDir = None, database_url: DatabaseUrl = None, config: ConfigFile = None) -> None:
    """Add a domain to a tenant; prints its canonical (IDNA) name."""

    async def go(svc: Services) -> str:
        tid = await tenant_id(svc, tenant)
        async with svc.db.write() as s:
            return (await domains.create_domain(s, tid, name, description=description)).name

    print(run(data_dir, database_url, config, go))


@app.command("list")
def list_(tenant: Annotated[str | None, typer.Option("--tenant", help="Only this tenant's domains")] = None,
          data_dir: DataDir = None, database_url: DatabaseUrl = None, config: ConfigFile = None) -> None:
    """List domains, one per line."""

    async def go(svc: Services) -> list[str]:
        tid = await tenant_id(svc, tenant) if tenant else None
        async with svc.db.read() as s:
            rows, _ = await domains.list_domains(s, tid)
        return [d.name for d in rows]

    for name in run(data_dir, database_url, config, go):
        print(name)


@app.command("delete")
def delete(name: str, yes: YesOpt = False, data_dir: DataDir = None, database_url: DatabaseUrl = None,
           config: ConfigFile = None) -> None:
    """Delete a domain with all its accounts, aliases, forwarders, DKIM keys and mail."""
    if not yes and not typer.confirm(f"Delete {name} and ALL its accounts and mail?"):
        fail("not confirmed")

    async def go(svc: Services) -> None:
        await domains.delete_domain(svc, None, name)

    run(data_dir, database_url, config, go)
    print(f"deleted {name}")

"""`mailwright reseller create|list|key create`: reseller accounts from the command line.

Runs against the same data dir / database as `serve`. `create` and `key create` print the new
`rk_` key alone on the last line of output (shown once, stored hashed), so scripts can take it
with `| tail -n1`.
"""

from __future__ import annotations

from typing import Annotated

import typer

from mailwright.cli.common import ConfigFile, DatabaseUrl, DataDir, fail, run_with_services, settings_from
from mailwright.directory import resellers, tenants
from mailwright.directory.errors import DirectoryError
from mailwright.directory.tenants import GIB, Actor, bytes_to_gb
from mailwright.services import Services

app = typer.Typer(no_args_is_help=True, help="Reseller accounts")
key_app = typer.Typer(no_args_is_help=True, help="Reseller API keys")
app.add_typer(key_app, name="key")


def _actor(reseller_id: str) -> Actor:
    return Actor(log_tenant_id=reseller_id, name="platform (cli)")


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Reseller account name")],
    plan: Annotated[str, typer.Option("--plan", help="free | paid")] = "paid",
    pool_gb: Annotated[float, typer.Option("--pool-gb", help="Storage it may hand out, GB (0 = unlimited)")] = 0,
    max_tenants: Annotated[int, typer.Option("--max-tenants", help="Sub-tenant limit (0 = unlimited)")] = 0,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    config: ConfigFile = None,
) -> None:
    """Create a reseller and its first API key (printed alone on the last line)."""
    if pool_gb < 0 or pool_gb != pool_gb:
        fail("--pool-gb must be >= 0")
    settings = settings_from(config, data_dir=data_dir, database_url=database_url)

    async def go(svc: Services) -> tuple[str, str]:
        async with svc.db.write() as s:
            try:
                r = await resellers.create_reseller(s, name, plan=plan, pool_bytes=int(round(pool_gb * GIB)),
                                                    max_tenants=max_tenants)
            except DirectoryError as exc:
                fail(exc.message)
            row, key = await resellers.mint_key(s, r.id, name="initial", created_by="cli")
            await tenants.log_action(s, _actor(r.id), "reseller.create", r.name, plan=plan,
                                     pool_bytes=r.pool_bytes, max_tenants=max_tenants, key_id=row.id)
            return r.id, key

    rid, key = run_with_services(settings, go)
    pool = f"{pool_gb:g} GB" if pool_gb else "unlimited"
    print(f"reseller {name} created: id {rid}, plan {plan}, pool {pool}, max tenants {max_tenants or 'unlimited'}")
    print("API key (shown once, send it as X-Api-Key):")
    print(key)


@app.command("list")
def list_resellers(data_dir: DataDir = None, database_url: DatabaseUrl = None, config: ConfigFile = None) -> None:
    """Resellers with plan, pool, allocation and tenant counts."""
    settings = settings_from(config, data_dir=data_dir, database_url=database_url)

    async def go(svc: Services) -> list[str]:
        lines = []
        async with svc.db.read() as s:
            for r in await resellers.list_resellers(s):
                o = await resellers.overview(s, r.id)
                pool = f"{bytes_to_gb(r.pool_bytes)}GB" if r.pool_bytes else "unlimited"
                lines.append(f"{r.name}\t{r.id}\t{r.plan}\t{r.status}\tpool={pool}\t"
                             f"allocated={bytes_to_gb(o.allocated_bytes)}GB\t"
                             f"tenants={o.tenants['active'] + o.tenants['suspended']}"
                             f"/{r.max_tenants or 'unlimited'}")
        return lines

    for line in run_with_services(settings, go):
        print(line)


@key_app.command("create")
def key_create(
    name: Annotated[str, typer.Argument(help="Reseller name or id")],
    key_name: Annotated[str | None, typer.Option("--name", help="A label for the key")] = None,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    config: ConfigFile = None,
) -> None:
    """Mint another API key for a reseller (printed alone on the last line)."""
    settings = settings_from(config, data_dir=data_dir, database_url=database_url)

    async def go(svc: Services) -> str:
        async with svc.db.write() as s:
            try:
                r = await resellers.get_reseller(s, name)
            except DirectoryError as exc:
                fail(exc.message)
            row, key = await resellers.mint_key(s, r.id, name=key_name, created_by="cli")
            await tenants.log_action(s, _actor(r.id), "apikey.create", row.id, name=key_name)
            return key

    print(run_with_services(settings, go))

"""`mailwright key create --platform | --tenant NAME`: mint an API key, printed once."""

from __future__ import annotations

from typing import Annotated

import typer

from mailwright.cli.common import ConfigFile, DatabaseUrl, DataDir, fail, run_with_services, settings_from
from mailwright.directory import apikeys, tenants
from mailwright.directory.errors import NotFound
from mailwright.services import Services

app = typer.Typer(no_args_is_help=True, help="API keys")


@app.command("create")
def create(
    platform: Annotated[bool, typer.Option("--platform", help="A platform admin key")] = False,
    tenant: Annotated[str | None, typer.Option("--tenant", help="A tenant admin key for this tenant")] = None,
    name: Annotated[str | None, typer.Option("--name")] = None,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    config: ConfigFile = None,
) -> None:
    """Create a key and print it (alone, on the last line)."""
    if platform == bool(tenant):
        fail("give exactly one of --platform or --tenant NAME")
    settings = settings_from(config, data_dir=data_dir, database_url=database_url)

    async def go(svc: Services) -> str:
        async with svc.db.write() as s:
            if platform:
                _, key = await apikeys.create_key(s, prefix="sa_", scope="platform", name=name)
                return key
            assert tenant is not None
            try:
                t = await tenants.get_tenant(s, tenant)
            except NotFound:
                fail(f"tenant {tenant!r} not found")
            _, key = await apikeys.create_key(s, prefix="tk_", scope="tenant", tenant_id=t.id, name=name)
            return key

    print(run_with_services(settings, go))

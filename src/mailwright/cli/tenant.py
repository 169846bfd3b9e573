"""`mailwright tenant create NAME`: a tenant with its default workspace; prints its `tk_` master
key alone on the last line (shown once; only its hash is stored)."""

from __future__ import annotations

from typing import Annotated

import typer

from mailwright.cli.common import ConfigFile, DatabaseUrl, DataDir, fail, run_with_services, settings_from
from mailwright.directory import workspaces
from mailwright.directory.errors import DirectoryError
from mailwright.services import Services

app = typer.Typer(no_args_is_help=True, help="Tenants")


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Tenant name (unique)")],
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    config: ConfigFile = None,
) -> None:
    """Create a tenant and print its tenant master key (tk_...) on the last line."""
    settings = settings_from(config, data_dir=data_dir, database_url=database_url)

    async def go(svc: Services) -> tuple[str, str]:
        try:
            async with svc.db.write() as s:
                t, _ws, key = await workspaces.create_tenant(s, name)
                return t.id, key
        except DirectoryError as exc:
            fail(exc.message)

    tenant_id, key = run_with_services(settings, go)
    print(f"tenant {name} created (id {tenant_id}); its tenant master key, shown once:")
    print(key)

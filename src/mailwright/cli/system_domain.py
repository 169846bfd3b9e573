"""`mailwright system-domain add|list|remove DOMAIN`: the platform's self-service sign-up domains.

Same --data-dir/--database-url/--config options as `serve`, so it acts on a running server's
data. Removing a system domain removes every mailbox on it.
"""

from __future__ import annotations

from typing import Annotated

import typer

from mailwright.cli.common import ConfigFile, DatabaseUrl, DataDir, fail, run_with_services, settings_from
from mailwright.directory import selfservice
from mailwright.directory.errors import DirectoryError
from mailwright.services import Services

app = typer.Typer(no_args_is_help=True, help="System domains (self-service sign-up)")

Domain = Annotated[str, typer.Argument(help="Domain name")]


@app.command("add")
def add(domain: Domain, data_dir: DataDir = None, database_url: DatabaseUrl = None, config: ConfigFile = None
        ) -> None:
    """Add a system domain anyone may sign up on."""
    settings = settings_from(config, data_dir=data_dir, database_url=database_url)

    async def go(svc: Services) -> str:
        try:
            return (await selfservice.add_system_domain(svc, domain)).name
        except DirectoryError as exc:
            fail(exc.message)

    print(run_with_services(settings, go))


@app.command("list")
def list_(data_dir: DataDir = None, database_url: DatabaseUrl = None, config: ConfigFile = None) -> None:
    """Print the system domains, one per line."""
    settings = settings_from(config, data_dir=data_dir, database_url=database_url)

    async def go(svc: Services) -> list[str]:
        return [d.name for d in await selfservice.list_system_domains(svc)]

    for name in run_with_services(settings, go):
        print(name)


@app.command("remove")
def remove(domain: Domain, data_dir: DataDir = None, database_url: DatabaseUrl = None,
           config: ConfigFile = None) -> None:
    """Remove a system domain and every mailbox on it."""
    settings = settings_from(config, data_dir=data_dir, database_url=database_url)

    async def go(svc: Services) -> None:
        try:
            await selfservice.remove_system_domain(svc, domain)
        except DirectoryError as exc:
            fail(exc.message)

    run_with_services(settings, go)
    print(f"removed {domain}")

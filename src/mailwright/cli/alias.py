"""`mailwright alias add ADDRESS MEMBER...`: an alias (local members) and/or forwarder (external)."""

from __future__ import annotations

from typing import Annotated

import typer

from mailwright.cli.common import ConfigFile, DatabaseUrl, DataDir, fail
from mailwright.cli.domain import run
from mailwright.directory import principals
from mailwright.directory.names import normalize_domain
from mailwright.directory.principals import PrincipalSpec
from mailwright.services import Services

app = typer.Typer(no_args_is_help=True, help="Aliases and forwarders")


@app.command("add")
def add(address: str, members: Annotated[list[str], typer.Argument(help="Local or external addresses")],
        data_dir: DataDir = None, database_url: DatabaseUrl = None, config: ConfigFile = None) -> None:
    """Create a list delivering to its members (local: alias; external: forwarded)."""

    async def go(svc: Services) -> None:
        from mailwright.directory import domains

        async with svc.db.read() as s:
            dom = await domains.find_domain(s, normalize_domain(address.rpartition("@")[2], field="name"))
        if dom is None:
            fail(f"domain of {address!r} is not hosted here")
        await principals.create_principal(svc.db, dom.tenant_id, PrincipalSpec(type="list", name=address,
                                                                               members=members))

    run(data_dir, database_url, config, go)
    print(f"created {address.lower()} -> {', '.join(m.lower() for m in members)}")

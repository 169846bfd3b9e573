"""`mailwright selfservice pro ADDRESS`: make a self-service account Pro and print a new
`tm_pro_` token alone on the last line (shown once; run again for another token)."""

from __future__ import annotations

from typing import Annotated

import typer

from mailwright.cli.common import ConfigFile, DatabaseUrl, DataDir, fail, run_with_services, settings_from
from mailwright.directory import selfservice
from mailwright.directory.errors import DirectoryError
from mailwright.services import Services

app = typer.Typer(no_args_is_help=True, help="Self-service (mail.cx dialect) accounts")


@app.command("pro")
def pro(address: Annotated[str, typer.Argument(help="The account's address")], data_dir: DataDir = None,
        database_url: DatabaseUrl = None, config: ConfigFile = None) -> None:
    """Promote an account to Pro and print a tm_pro_ token."""
    settings = settings_from(config, data_dir=data_dir, database_url=database_url)

    async def go(svc: Services) -> tuple[str, str]:
        try:
            p, token = await selfservice.promote_pro(svc, address)
        except DirectoryError as exc:
            fail(exc.message)
        return p.name, token

    name, token = run_with_services(settings, go)
    print(f"{name} is now a Pro account; its token (shown once):")
    print(token)

"""`mailwright dkim create DOMAIN`: generate a DKIM key; prints the TXT record to publish."""

from __future__ import annotations

from typing import Annotated

import typer

from mailwright.cli.common import ConfigFile, DatabaseUrl, DataDir
from mailwright.cli.domain import run
from mailwright.directory import dkim, domains
from mailwright.services import Services

app = typer.Typer(no_args_is_help=True, help="DKIM keys")


@app.command("create")
def create(domain: str,
           selector: Annotated[str | None, typer.Option(help="Default: YYYYMM + r|e")] = None,
           algorithm: Annotated[str, typer.Option(help="rsa-sha256 or ed25519-sha256")] = "rsa-sha256",
           data_dir: DataDir = None, database_url: DatabaseUrl = None, config: ConfigFile = None) -> None:
    """Create a key and print its DNS record (zone-file syntax)."""

    async def go(svc: Services) -> str:
        async with svc.db.read() as s:
            dom = await domains.get_domain(s, domain)
        row = await dkim.create(svc.db, dom, algorithm, selector)
        from mailwright.dnsrecords.expected import DnsRecord
        from mailwright.dnsrecords.zone import render_zone

        return render_zone([DnsRecord("TXT", f"{row.selector}._domainkey.{dom.name}.", row.public_txt)])

    print(run(data_dir, database_url, config, go), end="")

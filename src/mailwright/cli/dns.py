"""`mailwright dns DOMAIN`: the records the domain needs, as a BIND zone fragment (or --json)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from mailwright.cli.common import ConfigFile, DatabaseUrl, DataDir
from mailwright.cli.domain import run
from mailwright.directory import domains
from mailwright.dnsrecords import records_for_domain, render_zone
from mailwright.services import Services


def dns_command(domain: str, as_json: Annotated[bool, typer.Option("--json", help="JSON like the API")] = False,
                data_dir: DataDir = None, database_url: DatabaseUrl = None, config: ConfigFile = None) -> None:
    """Print every DNS record DOMAIN needs (MX, SPF, DKIM, DMARC, SRV, autoconfig, MTA-STS, TLS-RPT)."""

    async def go(svc: Services) -> str:
        async with svc.db.read() as s:
            dom = await domains.get_domain(s, domain)
            records = await records_for_domain(s, svc.settings, dom.id)
        if as_json:
            return json.dumps([r.as_dict() for r in records], indent=2) + "\n"
        return render_zone(records, comment=f"Mailwright records for {dom.name}")

    print(run(data_dir, database_url, config, go), end="")

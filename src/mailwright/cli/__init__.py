"""The `mailwright` command: `serve` and the administrative commands.

Every command takes the same --data-dir/--database-url/--config options as `serve`, so it works
on the same data as a running server. Errors are one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import sys

import typer

from mailwright.cli import keys, queue, reseller, serve, tenant

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
app.command("serve")(serve.serve_command)
app.add_typer(keys.app, name="key")
from mailwright.cli import account, alias, dkim, dns, domain  # noqa: E402 - management commands

app.add_typer(domain.app, name="domain")
app.add_typer(account.app, name="account")
app.add_typer(alias.app, name="alias")
app.add_typer(dkim.app, name="dkim")
app.command("dns")(dns.dns_command)
app.add_typer(reseller.app, name="reseller")
app.add_typer(queue.app, name="queue")
app.add_typer(tenant.app, name="tenant")
from mailwright.cli import selfservice, system_domain  # noqa: E402 - self-service (mail.cx)

app.add_typer(system_domain.app, name="system-domain")
app.add_typer(selfservice.app, name="selfservice")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)

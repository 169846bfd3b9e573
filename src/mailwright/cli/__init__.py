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
app.add_typer(reseller.app, name="reseller")
app.add_typer(queue.app, name="queue")
app.add_typer(tenant.app, name="tenant")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)

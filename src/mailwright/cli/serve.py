"""`mailwright serve`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mailwright.cli.common import ConfigFile, DatabaseUrl, DataDir, fail, settings_from
from mailwright.runtime.serve import ServeError, serve

Port = Annotated[int | None, typer.Option(min=0, max=65535)]


def serve_command(
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    config: ConfigFile = None,
    hostname: Annotated[str | None, typer.Option(help="The server's mail host name")] = None,
    bind: Annotated[str | None, typer.Option(help="Address to listen on [127.0.0.1]")] = None,
    http_port: Port = None,
    smtp_port: Port = None,
    submission_port: Port = None,
    submissions_port: Port = None,
    imap_port: Port = None,
    imaps_port: Port = None,
    pop3_port: Port = None,
    pop3s_port: Port = None,
    tls_cert: Annotated[Path | None, typer.Option(help="PEM certificate chain")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="PEM private key")] = None,
    workers: Annotated[int | None, typer.Option(min=1, max=64, help="Worker processes")] = None,
) -> None:
    """Run the whole mail host: HTTP API, SMTP, IMAP, POP3. Port 0 turns a listener off."""
    settings = settings_from(
        config, data_dir=data_dir, database_url=database_url, hostname=hostname, bind=bind,
        http_port=http_port, smtp_port=smtp_port, submission_port=submission_port,
        submissions_port=submissions_port, imap_port=imap_port, imaps_port=imaps_port,
        pop3_port=pop3_port, pop3s_port=pop3s_port, tls_cert=tls_cert, tls_key=tls_key, workers=workers,
    )
    try:
        code = serve(settings)
    except ServeError as exc:
        fail(str(exc))
    raise typer.Exit(code)

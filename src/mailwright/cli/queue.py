"""`mailwright queue list | show ID | retry ID | delete ID`: the outbound queue, offline or live.

Works on the same --data-dir/--database-url as `serve`, while it runs or not: `retry` makes
the recipients due now and a running server's runner picks them up on its next poll. `show`
prints when the sender was sent the message's one delay notice ("delay notice: -" = not yet;
see `delivery.outbound`), as the queue API's `delayNotice` does.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from mailwright.cli.common import ConfigFile, DatabaseUrl, DataDir, fail, run_with_services, settings_from
from mailwright.delivery import queue
from mailwright.delivery.queue import QueueEntry
from mailwright.directory.errors import NotFound
from mailwright.services import Services

app = typer.Typer(no_args_is_help=True, help="Outbound queue")

JsonOut = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")]


def _line(e: QueueEntry) -> str:
    rcpts = ", ".join(f"{r.rcpt} ({r.status}, {r.attempts} tries)" for r in e.recipients)
    return f"{e.id:>8}  {e.created_at:%Y-%m-%d %H:%M:%S}  {e.size:>9}  <{e.mail_from}>  -> {rcpts}"


def _show(e: QueueEntry) -> str:
    out = [f"id: {e.id}", f"from: <{e.mail_from}>", f"kind: {e.kind}", f"size: {e.size}",
           f"tenant: {e.tenant_id or '-'}", f"created: {e.created_at.isoformat()}",
           f"expires: {e.expires_at.isoformat()}",
           f"delay notice: {e.delay_notice_at.isoformat() if e.delay_notice_at else '-'}", "recipients:"]
    for r in e.recipients:
        nxt = r.next_attempt_at.isoformat() if r.next_attempt_at else "-"
        out.append(f"  {r.rcpt}: {r.status}, attempts {r.attempts}, next {nxt}")
        if r.last_error:
            out.append(f"    last error: {r.last_error}")
    return "\n".join(out)


@app.command("list")
def list_command(
    limit: Annotated[int, typer.Option("--limit")] = 1000,
    as_json: JsonOut = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    config: ConfigFile = None,
) -> None:
    """List queued messages, oldest first."""
    settings = settings_from(config, data_dir=data_dir, database_url=database_url)

    async def go(svc: Services) -> tuple[list[QueueEntry], int]:
        async with svc.db.read() as s:
            return await queue.list_messages(s, None, limit=limit)

    items, total = run_with_services(settings, go)
    if as_json:
        print(json.dumps({"items": [i.as_dict() for i in items], "total": total}, indent=2))
        return
    for e in items:
        print(_line(e))
    print(f"{total} message(s) queued")


def _one(action: str, queue_id: int, settings_args: dict[str, object]) -> QueueEntry | None:
    settings = settings_from(**settings_args)  # type: ignore[arg-type]

    async def go(svc: Services) -> QueueEntry | None:
        try:
            if action == "show":
                async with svc.db.read() as s:
                    return await queue.get_message(s, queue_id)
            if action == "retry":
                return await queue.retry_now(svc, queue_id)
            await queue.delete_message(svc, queue_id)
            return None
        except NotFound:
            fail(f"queued message {queue_id} not found")

    return run_with_services(settings, go)


@app.command("show")
def show_command(
    queue_id: int, as_json: JsonOut = False, data_dir: DataDir = None, database_url: DatabaseUrl = None,
    config: ConfigFile = None,
) -> None:
    """Show one queued message and the state of each recipient."""
    e = _one("show", queue_id, {"config": config, "data_dir": data_dir, "database_url": database_url})
    assert e is not None
    print(json.dumps(e.as_dict(), indent=2) if as_json else _show(e))


@app.command("retry")
def retry_command(
    queue_id: int, data_dir: DataDir = None, database_url: DatabaseUrl = None, config: ConfigFile = None,
) -> None:
    """Make the message's pending recipients due now."""
    _one("retry", queue_id, {"config": config, "data_dir": data_dir, "database_url": database_url})
    print(f"queued message {queue_id} will be retried now")


@app.command("delete")
def delete_command(
    queue_id: int, data_dir: DataDir = None, database_url: DatabaseUrl = None, config: ConfigFile = None,
) -> None:
    """Delete the message from the queue without a bounce."""
    _one("delete", queue_id, {"config": config, "data_dir": data_dir, "database_url": database_url})
    print(f"queued message {queue_id} deleted")

"""`mailwright queue show` prints when the message's one delay notice was sent: "-" while none
was, then the same time the queue API's `delayNotice` gives, once a real runner has sent it
(a 4xx peer on loopback). Both databases."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from mailwright.cli import app as cli_app
from mailwright.delivery import queue
from mailwright.delivery.submit import SubmitResult, submit
from mailwright.directory.logins import login
from mailwright.services import Services
from tests.support.server import InProcessServer
from tests.support.smtp import PASSWORD, add_domain, add_mailbox
from tests.support.smtp_peer import SmtpPeer

FAST = {"queue_retry_base_seconds": 0.5, "queue_retry_max_seconds": 1.0, "queue_poll_seconds": 0.2,
        "outbound_timeout_seconds": 10.0}


@pytest.fixture
def peer(tmp_path: Path) -> Iterator[SmtpPeer]:
    p = SmtpPeer(tmp_path / "peer").start()
    try:
        yield p
    finally:
        p.stop()


def wait(pred: Callable[[], Any], timeout: float = 30, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def entry(srv: InProcessServer, queue_id: int) -> queue.QueueEntry:
    async def go(svc: Services) -> queue.QueueEntry:
        async with svc.db.read() as s:
            return await queue.get_message(s, queue_id)

    return srv.run(go)


def test_queue_show_prints_the_delay_notice_time(tmp_path: Path, database_url: str, peer: SmtpPeer) -> None:
    # Notices off at first (0), so "not yet" is observable without racing the runner.
    srv = InProcessServer(tmp_path / "data", database_url, queue_delay_notice_after=0, **FAST).start()
    try:
        add_domain(srv, "a.test")
        add_mailbox(srv, "alice@a.test")
        assert srv.svc is not None
        srv.svc.settings.transport_map["remote.test"] = f"[127.0.0.1]:{peer.port}"
        peer.script.mail_reply = "451 4.3.0 try again later"
        raw = b"From: alice@a.test\r\nTo: late@remote.test\r\nSubject: slow\r\n\r\nhi\r\n"

        async def send(svc: Services) -> SubmitResult:
            acc = await login(svc.db, "alice@a.test", PASSWORD)
            assert acc is not None
            return await submit(svc, acc, "alice@a.test", ["late@remote.test"], raw, client_ip="127.0.0.1")

        qid = srv.run(send).queue_id
        assert qid is not None
        wait(lambda: entry(srv, qid).recipients[0].attempts >= 2, what="deferred attempts")
        opts = ["--data-dir", str(srv.settings.data_dir), "--database-url", srv.settings.database_url]
        runner = CliRunner()

        def show(*extra: str) -> str:
            r = runner.invoke(cli_app, ["queue", "show", str(qid), *extra, *opts])
            assert r.exit_code == 0, r.output
            return r.output

        assert "delay notice: -\n" in show()
        assert json.loads(show("--json"))["delayNotice"] is None

        srv.svc.settings.queue_delay_notice_after = 0.5  # the message is older than that: next retry
        sent = wait(lambda: entry(srv, qid).delay_notice_at, what="the delay notice")
        assert isinstance(sent, datetime)
        text = show()
        assert f"delay notice: {sent.isoformat()}\n" in text, text
        lines = text.splitlines()
        assert lines.index(f"delay notice: {sent.isoformat()}") == lines.index("recipients:") - 1
        assert json.loads(show("--json"))["delayNotice"] == sent.isoformat()
        with srv.api() as api:  # the queue API says the same
            assert api.get(f"/api/queue/messages/{qid}").json()["data"]["delayNotice"] == sent.isoformat()
        assert entry(srv, qid).recipients[0].status == "pending"  # a notice, not a bounce
    finally:
        srv.stop()

"""Outbound queue against a real remote MTA (a scriptable aiosmtpd peer on loopback):
per-recipient outcomes, DSN bounces, retries with backoff, expiry, connection reuse,
opportunistic STARTTLS, held mail of suspended tenants, the queue API and CLI."""

from __future__ import annotations

import email
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from email import policy
from pathlib import Path
from typing import Any

import pytest

from mailwright.delivery import queue
from mailwright.delivery.submit import SubmitResult, submit
from mailwright.directory.logins import login
from mailwright.services import Services
from tests.support.server import InProcessServer
from tests.support.smtp import PASSWORD, add_domain, add_mailbox, imap_messages, set_tenant_status
from tests.support.smtp_peer import SmtpPeer

FAST = {"queue_retry_base_seconds": 0.5, "queue_retry_max_seconds": 2.0, "queue_poll_seconds": 0.2,
        "outbound_timeout_seconds": 10.0}


@pytest.fixture
def mw(tmp_path: Path, database_url: str) -> Iterator[InProcessServer]:
    srv = InProcessServer(tmp_path / "data", database_url, **FAST).start()
    try:
        add_domain(srv, "a.test")
        add_mailbox(srv, "alice@a.test")
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def peer(tmp_path: Path) -> Iterator[SmtpPeer]:
    p = SmtpPeer(tmp_path / "peer").start()
    try:
        yield p
    finally:
        p.stop()


def route_to(srv: InProcessServer, domain: str, port: int) -> None:
    """Point `domain` at 127.0.0.1:port (a transport-map entry, no MX lookup)."""
    assert srv.svc is not None
    srv.svc.settings.transport_map[domain] = f"[127.0.0.1]:{port}"


def send(srv: InProcessServer, rcpts: list[str], subject: str = "hello", sender: str = "alice@a.test",
         body: str = "Hi there.") -> SubmitResult:
    raw = (f"From: Alice <{sender}>\r\nTo: {', '.join(rcpts)}\r\nSubject: {subject}\r\n\r\n{body}\r\n").encode()

    async def go(svc: Services) -> SubmitResult:
        acc = await login(svc.db, sender, PASSWORD)
        assert acc is not None
        return await submit(svc, acc, sender, rcpts, raw, client_ip="127.0.0.1")

    return srv.run(go)


def entries(srv: InProcessServer) -> list[queue.QueueEntry]:
    async def go(svc: Services) -> list[queue.QueueEntry]:
        async with svc.db.read() as s:
            return (await queue.list_messages(s, limit=1000))[0]

    return srv.run(go)


def wait(pred: Callable[[], Any], timeout: float = 20, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def dsns(srv: InProcessServer, addr: str = "alice@a.test") -> list[email.message.Message]:
    out = []
    for raw in imap_messages(srv, addr):
        msg = email.message_from_bytes(raw, policy=policy.compat32)
        if msg.get_content_type() == "multipart/report":
            out.append(msg)
    return out


def dsn_fields(msg: email.message.Message) -> list[dict[str, str]]:
    """The per-recipient blocks of the message/delivery-status part."""
    for part in msg.walk():
        if part.get_content_type() == "message/delivery-status":
            payload = part.get_payload()
            blocks = payload if isinstance(payload, list) else []
            return [{k.lower(): str(v) for k, v in b.items()} for b in blocks[1:] if not isinstance(b, str)]
    raise AssertionError("no message/delivery-status part")


def test_remote_delivery_with_starttls_and_dkim(mw: InProcessServer, peer: SmtpPeer) -> None:
    from mailwright.directory import dkim, domains

    async def keys(svc: Services) -> None:
        async with svc.db.read() as s:
            d = await domains.get_domain(s, "a.test")
        await dkim.create(svc.db, d, "ed25519-sha256", "ed1")
        await dkim.create(svc.db, d, "rsa-sha256", "rsa1")

    mw.run(keys)
    route_to(mw, "remote.test", peer.port)
    res = send(mw, ["bob@remote.test", "carol@remote.test"])
    assert res.queued == ["bob@remote.test", "carol@remote.test"] and res.queue_id is not None
    got = peer.wait_for(lambda r: len(r) == 1)
    m = got[0]
    assert m.mail_from == "alice@a.test" and sorted(m.rcpts) == ["bob@remote.test", "carol@remote.test"]
    assert m.tls, "opportunistic STARTTLS was offered but not used"
    msg = email.message_from_bytes(m.data, policy=policy.compat32)
    sigs = msg.get_all("DKIM-Signature") or []
    assert {s.split("a=")[1].split(";")[0].strip() for s in sigs} == {"ed25519-sha256", "rsa-sha256"}
    assert msg["Message-ID"] == res.message_id and msg["Date"] and msg["Received"]
    wait(lambda: not entries(mw), what="the queue to empty after delivery")


def test_per_recipient_results_bounce_and_retry(mw: InProcessServer, peer: SmtpPeer) -> None:
    route_to(mw, "remote.test", peer.port)
    peer.script.rcpt_replies = {
        "gone@remote.test": "550 5.1.1 <gone@remote.test>: Recipient address rejected: User unknown",
        "busy@remote.test": "451 4.2.0 try later",
    }
    res = send(mw, ["ok@remote.test", "gone@remote.test", "busy@remote.test"], subject="three")
    peer.wait_for(lambda r: len(r) == 1)
    assert peer.received[0].rcpts == ["ok@remote.test"]
    # The 550 bounces to the sender (a local mailbox), as an RFC 3464 report.
    bounce = wait(lambda: dsns(mw), what="a DSN")[0]
    assert bounce["From"].startswith("Mail Delivery System <MAILER-DAEMON@")
    blocks = dsn_fields(bounce)
    assert [b["final-recipient"] for b in blocks] == ["rfc822; gone@remote.test"]
    assert blocks[0]["action"] == "failed" and blocks[0]["status"] == "5.1.1"
    assert "550 5.1.1" in blocks[0]["diagnostic-code"]
    assert "Subject: three" in bounce.as_string()  # the original headers come back
    # The 451 stays queued with its error, retried with backoff.
    entry = wait(lambda: [e for e in entries(mw) if e.id == res.queue_id], what="queue entry")[0]
    states = {r.rcpt: r for r in entry.recipients}
    assert states["ok@remote.test"].status == "sent"
    assert states["gone@remote.test"].status == "failed"
    busy = states["busy@remote.test"]
    assert busy.status == "pending" and busy.attempts >= 1 and "451 4.2.0" in (busy.last_error or "")
    wait(lambda: next(r for r in entries(mw)[0].recipients if r.rcpt == "busy@remote.test").attempts >= 2,
         what="a second attempt (backoff)")
    peer.script.rcpt_replies.pop("busy@remote.test")
    got = peer.wait_for(lambda r: len(r) == 2)
    assert got[1].rcpts == ["busy@remote.test"]
    wait(lambda: not entries(mw), what="the queue to empty")
    assert len(dsns(mw)) == 1  # no second bounce


def test_expiry_bounces_with_4_4_7(tmp_path: Path, database_url: str, peer: SmtpPeer) -> None:
    srv = InProcessServer(tmp_path / "data", database_url, queue_lifetime_seconds=2, **FAST).start()
    try:
        add_domain(srv, "a.test")
        add_mailbox(srv, "alice@a.test")
        route_to(srv, "remote.test", peer.port)
        peer.script.mail_reply = "421 4.3.2 Service shutting down"
        send(srv, ["late@remote.test"])
        bounce = wait(lambda: dsns(srv), timeout=30, what="an expiry DSN")[0]
        block = dsn_fields(bounce)[0]
        assert block["final-recipient"] == "rfc822; late@remote.test" and block["status"] == "4.4.7"
        wait(lambda: not entries(srv), what="the queue to empty")
        assert peer.received == []
    finally:
        srv.stop()


def test_connection_refused_then_delivered_and_one_connection_reused(mw: InProcessServer, peer: SmtpPeer) -> None:
    route_to(mw, "remote.test", peer.port)
    assert mw.svc is not None
    mw.svc.settings.queue_retry_base_seconds = 60  # no natural retry races the flush below
    mw.svc.settings.queue_retry_max_seconds = 60
    peer.script.mail_reply = "451 4.3.0 not now"
    for i in range(6):
        send(mw, [f"u{i}@remote.test"], subject=f"m{i}")
    wait(lambda: len(entries(mw)) == 6 and all(e.recipients[0].attempts >= 1 for e in entries(mw)),
         what="a first failed attempt of every message")
    assert "451 4.3.0" in (entries(mw)[0].recipients[0].last_error or "")
    peer.script.mail_reply = None
    before = peer.connections

    async def flush(svc: Services) -> int:
        return await queue.flush(svc)

    assert mw.run(flush) == 6
    got = peer.wait_for(lambda r: len(r) == 6)
    assert sorted(g.rcpts[0] for g in got) == [f"u{i}@remote.test" for i in range(6)]
    assert len({g.connection for g in got}) == 1 and peer.connections == before + 1


def test_null_sender_never_bounced(mw: InProcessServer, peer: SmtpPeer) -> None:
    """A bounce that bounces is dropped, not bounced again."""
    route_to(mw, "remote.test", peer.port)
    peer.script.rcpt_replies = {"x@remote.test": "550 5.1.1 no such user"}

    async def go(svc: Services) -> int:
        return await queue.enqueue(svc, b"From: MAILER-DAEMON@a.test\r\nSubject: bounce\r\n\r\nx\r\n", "",
                                   ["x@remote.test"], tenant_id=None, principal_id=None, kind="dsn")

    mw.run(go)
    wait(lambda: not entries(mw), what="the bounce to be dropped")
    time.sleep(0.5)
    assert entries(mw) == [] and dsns(mw) == []


def test_suspended_tenant_mail_is_held(mw: InProcessServer, peer: SmtpPeer) -> None:
    route_to(mw, "remote.test", peer.port)
    peer.script.mail_reply = "451 4.3.0 not yet"
    send(mw, ["held@remote.test"])
    wait(lambda: entries(mw) and entries(mw)[0].recipients[0].attempts >= 1, what="a first attempt")
    pid = mw.run(lambda svc: _principal_id(svc, "alice@a.test"))
    set_tenant_status(mw, pid, "suspended")
    peer.script.mail_reply = None
    time.sleep(2.5)  # several retry periods
    assert peer.received == []
    e = entries(mw)[0].recipients[0]
    assert e.status == "pending" and "held" in (e.last_error or "")
    set_tenant_status(mw, pid, "active")
    peer.wait_for(lambda r: len(r) == 1)


def test_terminated_tenant_mail_is_dropped_without_bounce(mw: InProcessServer, peer: SmtpPeer) -> None:
    route_to(mw, "remote.test", peer.port)
    peer.script.mail_reply = "451 4.3.0 not yet"
    send(mw, ["gone@remote.test"])
    wait(lambda: entries(mw) and entries(mw)[0].recipients[0].attempts >= 1, what="a first attempt")
    set_tenant_status(mw, mw.run(lambda svc: _principal_id(svc, "alice@a.test")), "terminated")
    peer.script.mail_reply = None
    wait(lambda: not entries(mw), what="the queue to drop the message")
    time.sleep(1)
    assert entries(mw) == [] and peer.received == []


async def _principal_id(svc: Services, name: str) -> str:
    from mailwright.directory.principals import find_principal

    async with svc.db.read() as s:
        p = await find_principal(s, name)
        assert p is not None
        return p.id


def test_queue_api(mw: InProcessServer, peer: SmtpPeer) -> None:
    route_to(mw, "remote.test", peer.port)
    peer.script.mail_reply = "452 4.3.1 insufficient storage"
    res = send(mw, ["q@remote.test"])
    wait(lambda: entries(mw) and entries(mw)[0].recipients[0].attempts >= 1, what="a first attempt")
    with mw.api() as api:
        r = api.get("/api/queue/messages")
        assert r.status_code == 200, r.text
        items = r.json()["data"]["items"]
        assert [i["id"] for i in items] == [res.queue_id] and r.json()["data"]["total"] == 1
        item = items[0]
        assert item["from"] == "alice@a.test" and item["size"] > 0 and item["created"]
        rc = item["recipients"][0]
        assert rc["address"] == "q@remote.test" and rc["status"] == "pending" and rc["attempts"] >= 1
        assert "452 4.3.1" in rc["lastError"] and rc["nextAttempt"]
        assert api.get(f"/api/queue/messages/{res.queue_id}").json()["data"]["id"] == res.queue_id
        assert api.get("/api/queue/messages/999999").status_code == 404
        assert api.get("/api/queue/messages/abc").json()["error"] == "notFound"
        peer.script.mail_reply = None
        r = api.post(f"/api/queue/messages/{res.queue_id}/retry")
        assert r.status_code in (200, 404), r.text  # 404 if the runner was faster than the answer
        peer.wait_for(lambda got: len(got) == 1)
        wait(lambda: api.get("/api/queue/messages").json()["data"]["total"] == 0, what="an empty queue")
        # Delete: a message that can never go is dropped without a bounce.
        peer.script.mail_reply = "451 4.3.0 never"
        res2 = send(mw, ["never@remote.test"])
        r = api.delete(f"/api/queue/messages/{res2.queue_id}")
        assert r.status_code == 200 and r.json() == {"data": None}
        assert api.get(f"/api/queue/messages/{res2.queue_id}").status_code == 404
        assert api.delete(f"/api/queue/messages/{res2.queue_id}").json()["error"] == "notFound"
    with mw.api("not-a-key") as api:
        r = api.get("/api/queue/messages")
        assert r.status_code == 401 and r.json()["error"] == "unauthorized"


def test_queue_api_tenant_scope(mw: InProcessServer, peer: SmtpPeer) -> None:
    from mailwright.directory import apikeys
    from mailwright.storage.models import Tenant

    route_to(mw, "remote.test", peer.port)
    peer.script.mail_reply = "451 4.3.0 hold on"
    res = send(mw, ["t@remote.test"])

    async def keys(svc: Services) -> tuple[str, str]:
        async with svc.db.write() as s:
            other = Tenant(name="other-tenant")
            s.add(other)
            await s.flush()
            _, k_other = await apikeys.create_key(s, prefix="tk_", scope="tenant", tenant_id=other.id)
            pid = await _principal_id(svc, "alice@a.test")
            from mailwright.storage.models import Principal

            p = await s.get(Principal, pid)
            assert p is not None and p.tenant_id
            _, k_own = await apikeys.create_key(s, prefix="tk_", scope="tenant", tenant_id=p.tenant_id)
        return k_own, k_other

    k_own, k_other = mw.run(keys)
    with mw.api(k_other) as api:
        assert api.get("/api/queue/messages").json()["data"]["total"] == 0
        assert api.get(f"/api/queue/messages/{res.queue_id}").status_code == 404
        assert api.post(f"/api/queue/messages/{res.queue_id}/retry").status_code == 404
        assert api.delete(f"/api/queue/messages/{res.queue_id}").status_code == 404
    with mw.api(k_own) as api:
        assert [i["id"] for i in api.get("/api/queue/messages").json()["data"]["items"]] == [res.queue_id]
        assert api.patch(f"/api/queue/messages/{res.queue_id}", json={"retry": True}).status_code == 200
        assert api.patch(f"/api/queue/messages/{res.queue_id}", json={"x": 1}).json()["error"] == "unsupported"


def test_queue_cli(mw: InProcessServer, peer: SmtpPeer, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from mailwright.cli import app

    route_to(mw, "remote.test", peer.port)
    peer.script.mail_reply = "451 4.3.0 wait"
    res = send(mw, ["cli@remote.test"])
    wait(lambda: entries(mw) and entries(mw)[0].recipients[0].attempts >= 1, what="a first attempt")
    opts = ["--data-dir", str(mw.settings.data_dir), "--database-url", mw.settings.database_url]
    # Once as the real command (the entry point), then in-process (each interpreter start costs seconds).
    out = subprocess.run([sys.executable, "-m", "mailwright", "queue", "list", *opts], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "cli@remote.test" in out.stdout and "1 message(s) queued" in out.stdout
    runner = CliRunner()

    def cli(*args: str) -> tuple[int, str]:
        r = runner.invoke(app, ["queue", *args, *opts])
        return r.exit_code, r.output

    code, text = cli("show", str(res.queue_id))
    assert code == 0 and "last error: smtp; 451 4.3.0 wait" in text, text
    code, text = cli("show", str(res.queue_id), "--json")
    assert code == 0 and json.loads(text)["recipients"][0]["address"] == "cli@remote.test"
    code, text = cli("show", "424242")
    assert code != 0 and "not found" in text
    assert cli("retry", str(res.queue_id))[0] == 0
    assert cli("delete", str(res.queue_id))[0] == 0
    assert entries(mw) == []
    assert "0 message(s) queued" in cli("list")[1]


def test_two_nodes_share_the_queue_exactly_once(mw: InProcessServer, peer: SmtpPeer,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Two runners on one database (PostgreSQL: SKIP LOCKED; SQLite: the writer lock) split the
    queue between them and deliver every recipient once."""
    from mailwright.delivery import outbound

    monkeypatch.setattr(outbound, "BATCH", 10)  # small claims, so both runners get work
    other = InProcessServer(mw.settings.data_dir, mw.settings.database_url, **FAST)
    other.settings.hostname = "node2.test"
    other.start()
    try:
        assert mw.svc is not None and other.svc is not None
        for node in (mw, other):
            assert node.svc is not None
            node.svc.settings.queue_retry_base_seconds = 60
            node.svc.settings.queue_retry_max_seconds = 60
            route_to(node, "remote.test", peer.port)
        peer.script.mail_reply = "451 4.3.0 later"
        n = 120

        async def load(svc: Services) -> None:
            for i in range(n):
                await queue.enqueue(svc, f"From: a@a.test\r\nSubject: {i}\r\n\r\nx\r\n".encode(), "alice@a.test",
                                    [f"r{i}@remote.test"], tenant_id=None, principal_id=None)

        mw.run(load)
        wait(lambda: all(e.recipients[0].attempts >= 1 for e in entries(mw)) and len(entries(mw)) == n,
             timeout=60, what="every message tried once")
        peer.script.mail_reply = None
        t0 = time.monotonic()

        async def flush(svc: Services) -> int:
            return await queue.flush(svc)

        mw.run(flush)
        got = peer.wait_for(lambda r: len(r) >= n, timeout=60)
        elapsed = time.monotonic() - t0
        wait(lambda: not entries(mw), what="an empty queue")
        rcpts = [g.rcpts[0] for g in got]
        assert sorted(rcpts) == sorted(f"r{i}@remote.test" for i in range(n)), "lost or duplicated"
        helos = {g.helo for g in got}
        assert helos == {"mx.test.local", "node2.test"}, helos  # both runners delivered
        print(f"\n{n} queued messages delivered by two runners in {elapsed:.2f} s ({n / elapsed:.0f}/s)")
    finally:
        other.stop()


def test_a_slow_destination_does_not_hold_back_the_others(mw: InProcessServer, peer: SmtpPeer,
                                                          tmp_path: Path) -> None:
    slow = SmtpPeer(tmp_path / "slow").start()
    try:
        slow.script.data_delay = 8.0  # a tarpit
        route_to(mw, "slow.test", slow.port)
        route_to(mw, "remote.test", peer.port)
        send(mw, ["x@slow.test"], subject="to the tarpit")
        time.sleep(0.5)  # its cycle is now stuck in DATA
        t0 = time.monotonic()
        send(mw, ["y@remote.test"], subject="meanwhile")
        peer.wait_for(lambda r: len(r) == 1, timeout=8)
        assert time.monotonic() - t0 < 6 and slow.received == []  # not after the tarpit's 8 s
        slow.wait_for(lambda r: len(r) == 1, timeout=20)
    finally:
        slow.stop()


# -- delay notices (RFC 3464 Action: delayed) -------------------------------------------------


def _report_parts(msg: email.message.Message) -> list[str]:
    assert msg.get_content_type() == "multipart/report" and msg.get_param("report-type") == "delivery-status"
    payload = msg.get_payload()
    assert isinstance(payload, list)
    return [p.get_content_type() if not isinstance(p, str) else "text" for p in payload]


def _per_message(msg: email.message.Message) -> dict[str, str]:
    for part in msg.walk():
        if part.get_content_type() == "message/delivery-status":
            blocks = part.get_payload()
            assert isinstance(blocks, list) and not isinstance(blocks[0], str)
            return {k.lower(): str(v) for k, v in blocks[0].items()}
    raise AssertionError("no message/delivery-status part")


def _actions(msgs: list[email.message.Message]) -> list[str]:
    return [b["action"] for m in msgs for b in dsn_fields(m)]


def test_delay_notice_once_then_delivered(tmp_path: Path, database_url: str, peer: SmtpPeer) -> None:
    """4xx past the notice time: the sender gets exactly one delay DSN, the message stays queued
    and is retried, and once the destination recovers it is delivered (no bounce)."""
    from email.utils import parsedate_to_datetime

    srv = InProcessServer(tmp_path / "data", database_url, queue_delay_notice_after=1.0, **FAST).start()
    try:
        add_domain(srv, "a.test")
        add_mailbox(srv, "alice@a.test")
        route_to(srv, "remote.test", peer.port)
        peer.script.mail_reply = "451 4.3.0 greylisted, come back later"
        res = send(srv, ["late@remote.test"], subject="patience")
        notice = wait(lambda: dsns(srv), timeout=30, what="a delay notice")[0]
        # RFC 3464 structure: human part, delivery-status, the original's headers.
        assert _report_parts(notice) == ["text/plain", "message/delivery-status", "text/rfc822-headers"]
        assert notice["Subject"] == "Delayed Mail (still being retried)"
        assert notice["From"].startswith("Mail Delivery System <MAILER-DAEMON@")
        assert notice["To"] == "<alice@a.test>" and notice["Auto-Submitted"] == "auto-replied"
        head = _per_message(notice)
        assert head["reporting-mta"].startswith("dns; ") and head["arrival-date"]
        [block] = dsn_fields(notice)
        assert block["final-recipient"] == "rfc822; late@remote.test"
        assert block["action"] == "delayed" and block["status"] == "4.3.0"
        assert "451 4.3.0 greylisted" in block["diagnostic-code"]
        entry = wait(lambda: [e for e in entries(srv) if e.id == res.queue_id], what="the queue entry")[0]
        assert entry.delay_notice_at is not None and entry.recipients[0].status == "pending"
        until = parsedate_to_datetime(block["will-retry-until"])
        assert abs((until - entry.expires_at).total_seconds()) < 1  # the message's own expiry
        assert "Subject: patience" in notice.as_string()  # the original headers
        assert "WARNING ONLY" in notice.get_payload()[0].get_payload()
        # Retried several more times: still one notice.
        wait(lambda: entries(srv)[0].recipients[0].attempts >= 4, timeout=30, what="more retries")
        assert len(dsns(srv)) == 1
        peer.script.mail_reply = None
        got = peer.wait_for(lambda r: len(r) == 1, timeout=30)
        assert got[0].rcpts == ["late@remote.test"]
        wait(lambda: not entries(srv), what="the queue to empty")
        time.sleep(0.5)
        assert _actions(dsns(srv)) == ["delayed"]  # delivered: no bounce, no second notice
    finally:
        srv.stop()


def test_delay_notice_then_bounce_at_expiry(tmp_path: Path, database_url: str, peer: SmtpPeer) -> None:
    srv = InProcessServer(tmp_path / "data", database_url, queue_delay_notice_after=0.5,
                          queue_lifetime_seconds=4, **FAST).start()
    try:
        add_domain(srv, "a.test")
        add_mailbox(srv, "alice@a.test")
        route_to(srv, "remote.test", peer.port)
        peer.script.rcpt_replies = {"never@remote.test": "452 4.2.2 mailbox full"}
        send(srv, ["never@remote.test"])
        got = wait(lambda: (lambda d: d if len(d) >= 2 else None)(dsns(srv)), timeout=40,
                   what="a delay notice, then the bounce")
        wait(lambda: not entries(srv), what="the queue to empty")
        time.sleep(0.5)
        got = dsns(srv)
        assert sorted(_actions(got)) == ["delayed", "failed"], _actions(got)
        by_action = {dsn_fields(m)[0]["action"]: dsn_fields(m)[0] for m in got}
        assert by_action["delayed"]["status"] == "4.2.2" and "will-retry-until" in by_action["delayed"]
        assert by_action["failed"]["status"] == "4.4.7" and "will-retry-until" not in by_action["failed"]
        assert peer.received == []
    finally:
        srv.stop()


def test_no_delay_notice_for_null_sender_nor_when_off(tmp_path: Path, database_url: str, peer: SmtpPeer) -> None:
    srv = InProcessServer(tmp_path / "data", database_url, queue_delay_notice_after=0.3, **FAST).start()
    try:
        add_domain(srv, "a.test")
        add_mailbox(srv, "alice@a.test")
        route_to(srv, "remote.test", peer.port)
        peer.script.mail_reply = "451 4.3.0 not now"

        async def go(svc: Services) -> int:
            return await queue.enqueue(svc, b"From: MAILER-DAEMON@a.test\r\nSubject: bounce\r\n\r\nx\r\n", "",
                                       ["x@remote.test"], tenant_id=None, principal_id=None, kind="dsn")

        null_id = srv.run(go)
        assert srv.svc is not None
        srv.svc.settings.queue_delay_notice_after = 0  # off: the submission below gets none either
        send(srv, ["y@remote.test"])
        wait(lambda: len(entries(srv)) == 2 and all(e.recipients[0].attempts >= 3 for e in entries(srv)),
             timeout=30, what="several deferrals of both")
        assert dsns(srv) == []
        assert all(e.delay_notice_at is None for e in entries(srv)) and null_id in [e.id for e in entries(srv)]
    finally:
        srv.stop()


def test_delay_notice_once_across_two_runners_with_null_envelope(tmp_path: Path, database_url: str,
                                                                 peer: SmtpPeer) -> None:
    """Two runners on one database defer the same messages over and over: each sender still gets
    exactly one notice per message, sent with the null envelope sender to the sender's own MX."""
    sender_mx = SmtpPeer(tmp_path / "sender-mx").start()
    nodes = [InProcessServer(tmp_path / "data", database_url, queue_delay_notice_after=0.5, **FAST)]
    try:
        nodes[0].start()
        second = InProcessServer(tmp_path / "data", database_url, queue_delay_notice_after=0.5, **FAST)
        second.settings.hostname = "node2.test"
        nodes.append(second.start())
        for node in nodes:
            route_to(node, "remote.test", peer.port)
            route_to(node, "sender.test", sender_mx.port)
        peer.script.mail_reply = "450 4.7.0 try again later"
        n = 8

        async def load(svc: Services) -> None:
            for i in range(n):
                await queue.enqueue(svc, f"From: s{i}@sender.test\r\nSubject: m{i}\r\n\r\nx\r\n".encode(),
                                    f"s{i}@sender.test", [f"r{i}@remote.test"], tenant_id=None, principal_id=None)

        nodes[0].run(load)
        got = sender_mx.wait_for(lambda r: len(r) >= n, timeout=40)
        wait(lambda: all(e.recipients[0].attempts >= 4 for e in entries(nodes[0]) if e.kind != "dsn"),
             timeout=40, what="several more deferrals of every message")
        time.sleep(0.5)
        got = list(sender_mx.received)
        assert sorted(g.rcpts[0] for g in got) == sorted(f"s{i}@sender.test" for i in range(n)), "twice or lost"
        assert {g.mail_from for g in got} == {"<>"}, {g.mail_from for g in got}  # the null sender
        for g in got:
            msg = email.message_from_bytes(g.data, policy=policy.compat32)
            [block] = dsn_fields(msg)
            assert block["action"] == "delayed" and block["status"] == "4.7.0"
        assert peer.received == []
    finally:
        for node in reversed(nodes):
            node.stop()
        sender_mx.stop()

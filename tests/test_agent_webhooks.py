"""Webhooks and SSE of the agent dialect: signed at-least-once delivery, retries, restart, DSNs."""

from __future__ import annotations

import json
import smtplib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mailwright.events.webhooks import verify_signature
from tests.support.agent import client, make_inbox, make_tenant, wait_for, webhook_receiver
from tests.support.server import InProcessServer


@pytest.fixture
def fast_server(tmp_path: Path, database_url: str) -> Iterator[InProcessServer]:
    srv = InProcessServer(tmp_path / "data", database_url, webhook_retry_base_seconds=0.2).start()
    try:
        yield srv
    finally:
        srv.stop()


def test_webhook_signed_delivery_retries_and_log(fast_server: InProcessServer) -> None:
    srv = fast_server
    t = make_tenant(srv, "hooks")
    a = make_inbox(srv, t["apiKey"], "a")
    b = make_inbox(srv, t["apiKey"], "b")
    with webhook_receiver(statuses=[500, 503]) as rec, client(srv, b["apiKey"]) as bapi:
        r = bapi.post("/v1/webhooks", json={"url": rec.url, "events": ["message.received"]})
        assert r.status_code == 201, r.text
        hook = r.json()
        secret = hook["secret"]
        assert secret.startswith("whsec_") and hook["events"] == ["message.received"] and hook["url"] == rec.url
        listed = bapi.get("/v1/webhooks").json()["webhooks"]
        assert [h["id"] for h in listed] == [hook["id"]] and "secret" not in listed[0]
        assert bapi.post("/v1/webhooks", json={"url": "ftp://x", "events": ["message.received"]}).status_code == 400
        assert bapi.post("/v1/webhooks", json={"url": rec.url, "events": ["nope"]}).status_code == 400
        assert bapi.post("/v1/webhooks", json={"events": ["message.received"]}).status_code == 400
        with client(srv, a["apiKey"]) as aapi:
            # Another inbox's key does not see B's webhook.
            assert aapi.get("/v1/webhooks").json()["webhooks"] == []
            assert aapi.delete(f"/v1/webhooks/{hook['id']}").status_code == 404
            s = aapi.post(f"/v1/inboxes/{a['id']}/send", json={"to": b["email"], "subject": "ping",
                                                               "plainBody": "hello b"}).json()
        # Two failures, then success: three attempts of the same event.
        wait_for(lambda: len(rec.received) >= 3, timeout=20)
        got = rec.received[:3]
        ids = {g.headers["x-mailwright-event-id"] for g in got}
        assert len(ids) == 1
        for g in got:
            assert verify_signature(secret, g.headers["x-mailwright-signature"], g.body)
            assert not verify_signature("whsec_wrong", g.headers["x-mailwright-signature"], g.body)
            assert not verify_signature(secret, g.headers["x-mailwright-signature"], g.body + b" ")
            assert g.json["id"] == g.headers["x-mailwright-event-id"]
        sig = got[0].headers["x-mailwright-signature"]
        assert sig.startswith("t=") and ",v1=" in sig
        # Replay protection: an old timestamp is refused by a receiver.
        assert not verify_signature(secret, sig, got[0].body, now=time.time() + 3600)
        ev = got[-1].json
        assert ev["type"] == "message.received" and got[-1].headers["x-mailwright-event-type"] == "message.received"
        assert ev["data"]["inboxId"] == b["id"] and ev["data"]["subject"] == "ping"
        assert ev["data"]["from"] == a["email"] and ev["data"]["rfcMessageId"] == s["messageId"]
        time.sleep(0.5)
        assert len(rec.received) == 3  # delivered: no more attempts
        log = bapi.get(f"/v1/webhooks/{hook['id']}/deliveries").json()["deliveries"]
        assert len(log) == 1 and log[0]["status"] == "delivered" and log[0]["attempts"] == 3
        assert log[0]["lastStatusCode"] == 200 and log[0]["eventId"] in ids
        # Rotate: a new secret, used from then on.
        new = bapi.post(f"/v1/webhooks/{hook['id']}/rotate").json()["secret"]
        assert new != secret
        with client(srv, a["apiKey"]) as aapi:
            aapi.post(f"/v1/inboxes/{a['id']}/send", json={"to": b["email"], "plainBody": "2"})
        wait_for(lambda: len(rec.received) >= 4)
        assert verify_signature(new, rec.received[3].headers["x-mailwright-signature"], rec.received[3].body)
        assert bapi.delete(f"/v1/webhooks/{hook['id']}").json() == {"deleted": True, "id": hook["id"]}
        assert bapi.get("/v1/webhooks").json()["webhooks"] == []


def test_webhook_sent_and_bounced_and_tenant_scope(fast_server: InProcessServer) -> None:
    srv = fast_server
    t = make_tenant(srv, "scoped")
    other = make_tenant(srv, "other")
    a = make_inbox(srv, t["apiKey"], "a")
    o = make_inbox(srv, other["apiKey"], "o")
    with webhook_receiver() as rec:
        with client(srv, t["apiKey"]) as api:
            assert api.post("/v1/webhooks", json={"url": rec.url, "events": [
                "message.sent", "message.bounced", "message.received"]}).status_code == 201
            api.post(f"/v1/inboxes/{a['id']}/send", json={"to": "someone@remote.test", "plainBody": "out"})
        wait_for(lambda: any(r.json["type"] == "message.sent" for r in rec.received))
        # A DSN arriving in the inbox is message.bounced, not message.received.
        dsn = (
            "From: Mail Delivery System <MAILER-DAEMON@mx.test.local>\r\n"
            f"To: {a['email']}\r\nSubject: Undelivered Mail Returned to Sender\r\n"
            "Message-ID: <dsn-1@mx.test.local>\r\nMIME-Version: 1.0\r\n"
            'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
            "--b\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
            "--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.test.local\r\n\r\n"
            "Final-Recipient: rfc822; someone@remote.test\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n--b--\r\n"
        )
        with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=30) as s:
            s.sendmail("", [a["email"]], dsn.encode())
        wait_for(lambda: any(r.json["type"] == "message.bounced" for r in rec.received))
        # Another tenant's mail never reaches this tenant's webhook.
        with client(srv, other["apiKey"]) as api:
            api.post(f"/v1/inboxes/{o['id']}/send", json={"to": o["email"], "plainBody": "private"})
        time.sleep(1.0)
        # (The queue may also bounce the message to remote.test for real: another message.bounced.)
        types = {r.json["type"] for r in rec.received}
        assert types == {"message.bounced", "message.sent"}, types
        assert any(r.json["data"]["rfcMessageId"] == "<dsn-1@mx.test.local>" for r in rec.received
                   if r.json["type"] == "message.bounced")
        assert all(r.json["data"]["inboxId"] == a["id"] for r in rec.received)


def test_pending_deliveries_survive_restart(tmp_path: Path, database_url: str) -> None:
    srv = InProcessServer(tmp_path / "data", database_url, webhook_retry_base_seconds=3.0).start()
    with webhook_receiver(statuses=[500]) as rec:
        try:
            t = make_tenant(srv, "durable")
            a = make_inbox(srv, t["apiKey"], "a")
            with client(srv, t["apiKey"]) as api:
                hook = api.post("/v1/webhooks", json={"url": rec.url, "events": ["message.received"]}).json()
                api.post(f"/v1/inboxes/{a['id']}/send", json={"to": a["email"], "plainBody": "x"})
                # First attempt failed and is recorded; a retry is pending in the database.
                # (A node killed *during* an attempt leaves the row locked for LOCK_SECONDS; then
                # another node takes it over.)
                def first_attempt_logged() -> bool:
                    log = api.get(f"/v1/webhooks/{hook['id']}/deliveries").json()["deliveries"]
                    return bool(log) and log[0]["attempts"] == 1
                wait_for(first_attempt_logged)
        finally:
            srv.stop()
        assert len(rec.received) == 1
        srv2 = InProcessServer(tmp_path / "data", database_url, webhook_retry_base_seconds=1.0).start()
        try:
            wait_for(lambda: len(rec.received) >= 2, timeout=20)
            assert rec.received[0].headers["x-mailwright-event-id"] == rec.received[1].headers["x-mailwright-event-id"]
            with client(srv2, t["apiKey"]) as api:
                def delivered() -> bool:
                    log = api.get(f"/v1/webhooks/{hook['id']}/deliveries").json()["deliveries"]
                    return len(log) == 1 and log[0]["status"] == "delivered" and log[0]["attempts"] == 2
                wait_for(delivered)
        finally:
            srv2.stop()


def test_sse_stream_scoped(server: InProcessServer) -> None:
    t = make_tenant(server, "sse")
    a = make_inbox(server, t["apiKey"], "a")
    b = make_inbox(server, t["apiKey"], "b")
    events: list[tuple[str, dict[str, object]]] = []
    ready = threading.Event()

    def listen() -> None:
        # ?api_key= as EventSource clients do; B's inbox key sees only B's events.
        with httpx.stream("GET", f"{server.base_url}/v1/events?api_key={b['apiKey']}", timeout=30) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            kind = ""
            for line in r.iter_lines():
                ready.set()
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    events.append((kind, json.loads(line[6:])))
                    return

    th = threading.Thread(target=listen, daemon=True)
    th.start()
    assert ready.wait(10)
    with client(server, a["apiKey"]) as api:
        api.post(f"/v1/inboxes/{a['id']}/send", json={"to": a["email"], "plainBody": "to self: not for b"})
        api.post(f"/v1/inboxes/{a['id']}/send", json={"to": b["email"], "subject": "for b", "plainBody": "x"})
    th.join(15)
    assert events and events[0][0] == "message.received"
    assert events[0][1]["data"]["inboxId"] == b["id"] and events[0][1]["data"]["subject"] == "for b"  # type: ignore[index]
    r = httpx.get(f"{server.base_url}/v1/events")
    assert r.status_code == 401
    r = httpx.get(f"{server.base_url}/v1/events?types=nope", headers={"X-API-Key": b["apiKey"]})
    assert r.status_code == 400


def test_two_nodes_deliver_each_event_once(tmp_path: Path, database_url: str) -> None:
    """Two nodes on one PostgreSQL database both see every event (LISTEN/NOTIFY) and both
    enqueue it; the webhook still gets each event exactly once."""
    if database_url.startswith("sqlite"):
        pytest.skip("several nodes share a database only on PostgreSQL")
    n1 = InProcessServer(tmp_path / "data", database_url, webhook_retry_base_seconds=0.2).start()
    n2 = InProcessServer(tmp_path / "data", database_url, webhook_retry_base_seconds=0.2).start()
    try:
        t = make_tenant(n1, "two-nodes")
        a = make_inbox(n1, t["apiKey"], "a")
        with webhook_receiver() as rec:
            with client(n2, t["apiKey"]) as api:
                assert api.post("/v1/webhooks", json={"url": rec.url}).status_code == 201
            time.sleep(5.5)  # node 1's webhook cache (5 s) learns about the new hook
            with client(n1, a["apiKey"]) as api:
                for i in range(3):
                    assert api.post(f"/v1/inboxes/{a['id']}/send",
                                    json={"to": a["email"], "plainBody": f"m{i}"}).status_code == 200
            wait_for(lambda: len([r for r in rec.received if r.json["type"] == "message.received"]) >= 3)
            time.sleep(1.5)
            got = [r.headers["x-mailwright-event-id"] for r in rec.received]
            assert len(got) == len(set(got)) == 6, got  # 3 received + 3 sent, each exactly once
    finally:
        n2.stop()
        n1.stop()


def test_real_bounce_from_the_queue_is_message_bounced(tmp_path: Path, database_url: str) -> None:
    """Send to a remote host that refuses the recipient: the outbound queue's DSN lands in the
    sender's INBOX and is reported as message.bounced (webhook and SSE share the mapping)."""
    srv = InProcessServer(tmp_path / "data", database_url, webhook_retry_base_seconds=0.2, queue_poll_seconds=0.3)
    # The "remote" MX is our own port 25 listener, which refuses to relay for remote.test (554).
    srv.settings.transport_map["remote.test"] = f"[127.0.0.1]:{srv.ports['smtp']}"
    srv.start()
    try:
        t = make_tenant(srv, "bouncy")
        a = make_inbox(srv, t["apiKey"], "a")
        with webhook_receiver() as rec:
            with client(srv, a["apiKey"]) as api:
                assert api.post("/v1/webhooks", json={"url": rec.url, "events": ["message.bounced"]}).status_code == 201
                r = api.post(f"/v1/inboxes/{a['id']}/send", json={"to": "nobody@remote.test", "subject": "lost",
                                                                   "plainBody": "x"})
                assert r.status_code == 200 and r.json()["status"] == "queued", r.text
            got = wait_for(lambda: [x for x in rec.received if x.json["type"] == "message.bounced"], timeout=30)
            assert got[0].json["data"]["inboxId"] == a["id"]
            with client(srv, a["apiKey"]) as api:
                inbound = [m for m in api.get(f"/v1/inboxes/{a['id']}/messages").json()["messages"]
                           if m["direction"] == "inbound"]
            assert [m["id"] for m in inbound] == [got[0].json["data"]["messageId"]]
    finally:
        srv.stop()

"""Suspension and termination as the rest of the mail flow sees them: SMTP AUTH, POP3, the
outbound queue (held while suspended, sent after reactivation, deleted with the tenant)."""

from __future__ import annotations

import poplib
import smtplib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.reseller import create_tenant, new_reseller, provision_mailbox, reseller_client, tenant_login
from tests.support.server import InProcessServer
from tests.support.smtp_peer import SmtpPeer

FAST = {"queue_retry_base_seconds": 0.3, "queue_retry_max_seconds": 1.0, "queue_poll_seconds": 0.1}
PW = "outbound password 1"


@pytest.fixture
def fast_server(tmp_path: Path, database_url: str) -> Iterator[InProcessServer]:
    srv = InProcessServer(tmp_path / "data", database_url, **FAST).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def peer(tmp_path: Path) -> Iterator[SmtpPeer]:
    p = SmtpPeer(tmp_path / "peer", tls=False).start()
    try:
        yield p
    finally:
        p.stop()


def wait(pred: Callable[[], Any], timeout: float = 20, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def submit(srv: InProcessServer, sender: str, rcpt: str, subject: str) -> None:
    raw = f"From: <{sender}>\r\nTo: <{rcpt}>\r\nSubject: {subject}\r\n\r\nbody\r\n".encode()
    with smtplib.SMTP("127.0.0.1", srv.ports["submission"], timeout=30) as smtp:
        smtp.ehlo("client.test")
        smtp.login(sender, PW)
        assert smtp.sendmail(sender, [rcpt], raw) == {}


def smtp_auth_refused(srv: InProcessServer, user: str) -> bool:
    with smtplib.SMTP("127.0.0.1", srv.ports["submission"], timeout=30) as smtp:
        smtp.ehlo("client.test")
        try:
            smtp.login(user, PW)
        except smtplib.SMTPAuthenticationError as exc:
            return exc.smtp_code == 535
    return False


def pop3_login_refused(srv: InProcessServer, user: str) -> bool:
    pop = poplib.POP3("127.0.0.1", srv.ports["pop3"], timeout=30)
    try:
        pop.user(user)
        pop.pass_(PW)
    except poplib.error_proto:
        return True
    finally:
        try:
            pop.quit()
        except (poplib.error_proto, OSError):
            pass
    return False


def test_suspension_holds_outbound_and_termination_drops_it(fast_server: InProcessServer, peer: SmtpPeer) -> None:
    srv = fast_server
    assert srv.svc is not None
    srv.svc.settings.transport_map["remote.test"] = f"[127.0.0.1]:{peer.port}"
    _, key = new_reseller(srv)
    with reseller_client(srv, key) as rc:
        t = create_tenant(rc, 1)
        tok = tenant_login(srv, t["tenant_username"], t["tenant_password"]).json()["data"]["token"]
        addr = provision_mailbox(srv, tok, "outbound-co.test", "sales", PW)

        # A message waiting in the queue (the remote says "later").
        peer.script.mail_reply = "451 4.3.0 not yet"
        submit(srv, addr, "buyer@remote.test", "Offer 1")
        with srv.api(tok) as api:
            wait(lambda: (items := api.get("/api/queue/messages").json()["data"]["items"])
                 and items[0]["recipients"][0]["attempts"] >= 1, what="a first attempt")

        # Suspended: logins refused everywhere, the queued mail is held even though the remote is back.
        assert rc.post(f"/api/user/tenants/{t['id']}/suspend").status_code == 200
        t0 = time.monotonic()
        assert smtp_auth_refused(srv, addr)
        assert pop3_login_refused(srv, addr)
        refused_after = time.monotonic() - t0
        peer.script.mail_reply = None
        time.sleep(1.5)  # several retry periods
        assert peer.received == []

        # Reactivated: the held message goes out.
        assert rc.post(f"/api/user/tenants/{t['id']}/reactivate").status_code == 200
        got = peer.wait_for(lambda r: len(r) == 1)
        assert b"Offer 1" in got[0].data
        assert not pop3_login_refused(srv, addr)

        # Terminated with mail still queued: the queue item goes with the tenant.
        peer.script.mail_reply = "451 4.3.0 not yet"
        submit(srv, addr, "buyer@remote.test", "Offer 2")
        with srv.api() as admin:
            wait(lambda: admin.get("/api/queue/messages").json()["data"]["total"] == 1, what="a queued message")
            r = rc.post(f"/api/user/tenants/{t['id']}/terminate")
            assert r.status_code == 200 and r.json()["data"]["deleted"]["queued"] == 1
            assert admin.get("/api/queue/messages").json()["data"]["total"] == 0
        peer.script.mail_reply = None
        time.sleep(1.0)
        assert len(peer.received) == 1
        assert smtp_auth_refused(srv, addr)
    # Refusals are immediate (status read from the database on each login); the figure includes
    # the protocols' own delay after a failed login.
    assert refused_after < 3.0, refused_after


def test_status_changes_are_announced_to_sessions(server: InProcessServer) -> None:
    """Long-lived sessions (IMAP IDLE, JMAP push) learn of a suspension from the event bus."""
    import asyncio

    from mailwright.directory.principals import find_principal
    from mailwright.events.bus import Event
    from mailwright.services import Services

    rid, key = new_reseller(server)
    with reseller_client(server, key) as rc:
        t = create_tenant(rc)
        tok = tenant_login(server, t["tenant_username"], t["tenant_password"]).json()["data"]["token"]
        addr = provision_mailbox(server, tok, "events-co.test", "ann", PW)
        subs: dict[str, Any] = {}

        async def subscribe(svc: Services) -> None:
            async with svc.db.read() as s:
                p = await find_principal(s, addr)
                assert p is not None
            subs["cm"] = svc.events.subscribe(p.id)
            subs["q"] = subs["cm"].__enter__()

        async def next_event(svc: Services) -> Event:
            ev: Event = await asyncio.wait_for(subs["q"].get(), 5)
            return ev

        server.run(subscribe)
        try:
            assert rc.post(f"/api/user/tenants/{t['id']}/suspend").status_code == 200
            ev = server.run(next_event)
            assert ev.type == "account.changed" and ev.data == {"reason": "tenant.suspended", "tenant_id": t["id"]}
            assert rc.post(f"/api/user/tenants/{t['id']}/suspend").status_code == 200  # no-op: no event
            assert rc.post(f"/api/user/tenants/{t['id']}/reactivate").status_code == 200
            assert server.run(next_event).data["reason"] == "tenant.reactivated"
            with server.api() as admin:
                assert admin.patch(f"/api/admin/resellers/{rid}", json={"status": "suspended"}).status_code == 200
            assert server.run(next_event).data["reason"] == "reseller.suspended"
        finally:
            async def unsubscribe(svc: Services) -> None:
                subs["cm"].__exit__(None, None, None)

            server.run(unsubscribe)

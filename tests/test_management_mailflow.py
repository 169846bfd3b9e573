"""What the API provisions, the mail flow obeys at once: SMTP (MX) delivery and IMAP logins."""

from __future__ import annotations

import email
import imaplib
import poplib
import smtplib
import time
from email.message import EmailMessage
from pathlib import Path

import pytest

from mailwright.services import Services
from mailwright.storage import blobjournal
from tests.support.management import add_account, add_domain, client, make_tenant
from tests.support.server import InProcessServer
from tests.support.smtp_peer import SmtpPeer


def send(srv: InProcessServer, rcpts: list[str], subject: str, body: str = "hello\n") -> None:
    msg = EmailMessage()
    msg["From"] = "sender@remote.test"
    msg["To"] = ", ".join(rcpts)
    msg["Subject"] = subject
    msg.set_content(body)
    with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=30) as smtp:
        assert smtp.sendmail("sender@remote.test", rcpts, msg.as_bytes()) == {}


def inbox_subjects(srv: InProcessServer, user: str, password: str) -> list[str]:
    imap = imaplib.IMAP4("127.0.0.1", srv.ports["imap"], timeout=30)
    try:
        imap.login(user, password)
        typ, data = imap.select("INBOX")
        assert typ == "OK"
        if data[0] == b"0":
            return []
        typ, rows = imap.fetch("1:*", "(BODY.PEEK[])")
        assert typ == "OK"
        return sorted(str(email.message_from_bytes(part[1])["Subject"]) for part in rows if isinstance(part, tuple))
    finally:
        imap.logout()


def imap_login_ok(srv: InProcessServer, user: str, password: str) -> bool:
    imap = imaplib.IMAP4("127.0.0.1", srv.ports["imap"], timeout=30)
    try:
        imap.login(user, password)
        return True
    except imaplib.IMAP4.error:
        return False
    finally:
        try:
            imap.logout()
        except Exception:  # noqa: BLE001
            pass


def test_new_account_alias_and_multi_address_deliver(server: InProcessServer) -> None:
    _, key = make_tenant(server, "flow")
    with client(server, key) as api:
        add_domain(api, "flow.test")
        add_domain(api, "other-flow.test")
        add_account(api, "info@flow.test", "InfoPassword1",
                    emails=["info@flow.test", "hello@flow.test", "info@other-flow.test"])
        r = api.post("/api/principal", json={"name": "sales@flow.test", "type": "list", "members": ["info@flow.test"]})
        assert r.status_code == 200
        # Immediately: mail to every address and to the alias lands in the one mailbox.
        send(server, ["info@flow.test"], "direct")
        send(server, ["hello@flow.test"], "second address")
        send(server, ["info@other-flow.test"], "other domain")
        send(server, ["sales@flow.test"], "via alias")
        send(server, ["sales@flow.test", "info@flow.test"], "alias and direct together")
        assert inbox_subjects(server, "info@flow.test", "InfoPassword1") == [
            "alias and direct together", "direct", "other domain", "second address", "via alias"]
        # Any of its addresses logs in too, and so do the other protocols, at once.
        assert imap_login_ok(server, "hello@flow.test", "InfoPassword1")
        pop = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=30)
        try:
            pop.user("info@flow.test")
            assert pop.pass_("InfoPassword1").startswith(b"+OK")
            assert pop.stat()[0] == 5
        finally:
            pop.quit()
        with smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=30) as sub:
            sub.ehlo("client.test")
            if sub.has_extn("starttls"):
                import ssl

                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                sub.starttls(context=ctx)
                sub.ehlo("client.test")
            assert sub.login("info@flow.test", "InfoPassword1")[0] == 235
        # An address removed by PATCH stops receiving at once.
        r = api.patch("/api/principal/info@flow.test",
                      json=[{"action": "removeItem", "field": "emails", "value": "hello@flow.test"}])
        assert r.status_code == 200
        with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=30) as smtp:
            with pytest.raises(smtplib.SMTPRecipientsRefused):
                smtp.sendmail("x@remote.test", ["hello@flow.test"], b"Subject: x\r\n\r\nx\r\n")


def test_password_change_takes_effect_at_once(server: InProcessServer) -> None:
    _, key = make_tenant(server, "pw")
    with client(server, key) as api:
        add_domain(api, "pw.test")
        add_account(api, "ann@pw.test", "FirstPassword")
        assert imap_login_ok(server, "ann@pw.test", "FirstPassword")  # now in the verify cache
        r = api.patch("/api/principal/ann@pw.test", json={"secrets": ["SecondPassword"]})
        assert r.status_code == 200
        assert not imap_login_ok(server, "ann@pw.test", "FirstPassword")
        assert imap_login_ok(server, "ann@pw.test", "SecondPassword")
        r = api.patch("/api/principal/ann@pw.test", json=[{"action": "addItem", "field": "secrets",
                                                           "value": "AppPassword3"}])
        assert r.status_code == 200
        assert imap_login_ok(server, "ann@pw.test", "SecondPassword")
        assert imap_login_ok(server, "ann@pw.test", "AppPassword3")
        r = api.patch("/api/principal/ann@pw.test", json=[{"action": "removeItem", "field": "secrets",
                                                           "value": "SecondPassword"}])
        assert r.status_code == 200
        assert not imap_login_ok(server, "ann@pw.test", "SecondPassword")
        assert imap_login_ok(server, "ann@pw.test", "AppPassword3")
        # A pre-hashed Argon2id secret (a migration) is stored as given and works.
        from argon2 import PasswordHasher

        r = api.patch("/api/principal/ann@pw.test", json=[{"action": "addItem", "field": "secrets",
                                                           "value": PasswordHasher().hash("Migrated-Pass")}])
        assert r.status_code == 200
        assert imap_login_ok(server, "ann@pw.test", "Migrated-Pass")
        r = api.patch("/api/principal/ann@pw.test", json={"secrets": ["short"]})
        assert r.status_code == 400 and "at least 8" in r.json()["details"]
        assert imap_login_ok(server, "ann@pw.test", "AppPassword3")


def _blob_hashes(srv: InProcessServer, address: str) -> tuple[list[str], int]:
    async def go(svc: Services) -> tuple[list[str], int]:
        from sqlalchemy import select

        from mailwright.directory.principals import find_principal
        from mailwright.storage.models import Message

        async with svc.db.read() as s:
            p = await find_principal(s, address)
            assert p is not None
            rows = (await s.execute(select(Message.blob_hash).where(Message.principal_id == p.id))).scalars()
            return list(rows), p.used_bytes

    return srv.run(go)


def test_deleting_account_and_domain_frees_mail(server: InProcessServer) -> None:
    _, key = make_tenant(server, "del")
    with client(server, key) as api:
        add_domain(api, "del.test")
        add_account(api, "gone@del.test", "APassword1")
        add_account(api, "stays@del.test", "APassword2")
        send(server, ["gone@del.test"], "only for gone", body="unique body for gone\n")
        send(server, ["gone@del.test", "stays@del.test"], "shared", body="shared body\n")
        gone_blobs, used = _blob_hashes(server, "gone@del.test")
        assert len(gone_blobs) == 2 and used > 0
        stays_blobs, _ = _blob_hashes(server, "stays@del.test")
        shared = set(gone_blobs) & set(stays_blobs)
        assert len(shared) == 1
        server.run(blobjournal.flush)  # small messages' files are the journal flusher's to write: now
        assert all(server.svc is not None and server.svc.blobs.exists(h) for h in gone_blobs + stays_blobs)
        assert api.delete("/api/principal/gone@del.test").status_code == 200
        assert server.svc is not None
        for h in gone_blobs:
            assert server.svc.blobs.exists(h) == (h in shared)  # unshared blob unlinked, shared one kept
        assert not imap_login_ok(server, "gone@del.test", "APassword1")
        # The address is free again; a new account there starts empty.
        add_account(api, "gone@del.test", "APassword3")
        assert inbox_subjects(server, "gone@del.test", "APassword3") == []
        # Deleting the domain removes everything in it, mail and blobs included.
        assert api.delete("/api/principal/del.test").status_code == 200
        for h in stays_blobs:
            assert not server.svc.blobs.exists(h)
        assert not imap_login_ok(server, "stays@del.test", "APassword2")
        assert api.get("/api/principal").json()["data"]["total"] == 0
        with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=30) as smtp:
            with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
                smtp.sendmail("x@remote.test", ["stays@del.test"], b"Subject: x\r\n\r\nx\r\n")
            assert refused.value.recipients["stays@del.test"][0] >= 550  # no longer a domain of ours


def test_quota_is_freed_by_deleting_an_account(server: InProcessServer) -> None:
    _, key = make_tenant(server, "quota")
    with client(server, key) as api:
        add_domain(api, "quota.test")
        add_account(api, "q@quota.test", "APassword1", quota=2000)
        send(server, ["q@quota.test"], "fits", body="x" * 1200 + "\n")
        with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=30) as smtp:
            with pytest.raises(smtplib.SMTPRecipientsRefused):
                smtp.sendmail("x@remote.test", ["q@quota.test"], b"Subject: y\r\n\r\n" + b"y" * 1200 + b"\r\n")
        item = api.get("/api/principal/q@quota.test").json()["data"]
        assert item["quota"] == 2000 and item["usedQuota"] > 1200
        r = api.patch("/api/principal/q@quota.test", json={"quota": 10_000})
        assert r.status_code == 200
        send(server, ["q@quota.test"], "fits now", body="y" * 1200 + "\n")
        assert inbox_subjects(server, "q@quota.test", "APassword1") == ["fits", "fits now"]


def test_forwarder_forwards_through_the_queue(tmp_path: Path, database_url: str) -> None:
    """A list with an external member forwards (outbound queue, SRS sender) while a local member
    of the same list still gets its copy."""
    srv = InProcessServer(tmp_path / "data", database_url, queue_poll_seconds=0.1,
                          queue_retry_base_seconds=0.3, queue_retry_max_seconds=1.0).start()
    peer = SmtpPeer(tmp_path / "peer", tls=False).start()
    try:
        assert srv.svc is not None
        srv.svc.settings.transport_map["far.test"] = f"[127.0.0.1]:{peer.port}"
        _, key = make_tenant(srv, "fwd")
        with client(srv, key) as api:
            add_domain(api, "fwd.test")
            add_account(api, "keep@fwd.test", "KeepPassword1")
            r = api.post("/api/principal", json={"name": "forward@fwd.test", "type": "list",
                                                 "members": ["external@far.test", "keep@fwd.test"]})
            assert r.status_code == 200
        send(srv, ["forward@fwd.test"], "to be forwarded")
        deadline = time.monotonic() + 30
        while not peer.received and time.monotonic() < deadline:
            time.sleep(0.1)
        assert peer.received, "the forward never reached the external host"
        got = peer.received[0]
        assert got.rcpts == ["external@far.test"] and b"Subject: to be forwarded" in got.data
        assert got.mail_from.lower().startswith("srs0=") and got.mail_from.lower().endswith("@fwd.test")
        assert inbox_subjects(srv, "keep@fwd.test", "KeepPassword1") == ["to be forwarded"]
    finally:
        peer.stop()
        srv.stop()

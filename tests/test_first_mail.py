"""The first mail, end to end: API -> SMTP (MX) -> IMAP, on SQLite and PostgreSQL."""

from __future__ import annotations

import imaplib
import smtplib
from email.message import EmailMessage

import httpx
import pytest

from tests.support.server import InProcessServer


def make_mailbox(srv: InProcessServer, domain: str, user: str, password: str) -> str:
    with srv.api() as api:
        r = api.post("/api/principal", json={"name": domain, "type": "domain"})
        assert r.status_code == 200, r.text
        addr = f"{user}@{domain}"
        r = api.post("/api/principal", json={"name": addr, "type": "individual", "secrets": [password],
                                             "emails": [addr]})
        assert r.status_code == 200, r.text
        assert isinstance(r.json()["data"], str)
    return addr


def test_health(server: InProcessServer) -> None:
    r = httpx.get(server.base_url + "/health")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_first_mail_end_to_end(server: InProcessServer) -> None:
    addr = make_mailbox(server, "example.test", "alice", "correct horse battery")
    msg = EmailMessage()
    msg["From"] = "Bob <bob@remote.test>"
    msg["To"] = addr
    msg["Subject"] = "Hello Alice"
    msg["Message-ID"] = "<first-mail@remote.test>"
    msg.set_content("First mail through Mailwright.\n")

    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=30) as smtp:
        code, _ = smtp.ehlo("remote.test")
        assert code == 250
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            smtp.sendmail("bob@remote.test", ["nobody@example.test"], msg.as_bytes())
        assert refused.value.recipients["nobody@example.test"][0] == 550
        assert b"5.1.1" in refused.value.recipients["nobody@example.test"][1]
        assert smtp.sendmail("bob@remote.test", [addr], msg.as_bytes()) == {}

    imap = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=30)
    try:
        typ, _ = imap.login(addr, "correct horse battery")
        assert typ == "OK"
        typ, data = imap.select("INBOX")
        assert typ == "OK" and data[0] == b"1"
        typ, data = imap.fetch("1", "(UID FLAGS RFC822.SIZE ENVELOPE BODY.PEEK[])")
        assert typ == "OK"
        meta, body = data[0]  # type: ignore[misc]
        assert b"Hello Alice" in meta and b"UID 1" in meta
        assert b"First mail through Mailwright." in body
        assert body.startswith(b"From: Bob <bob@remote.test>") or b"Subject: Hello Alice" in body
    finally:
        imap.logout()


def test_wrong_password_and_unknown_key(server: InProcessServer) -> None:
    addr = make_mailbox(server, "example.test", "carol", "a good password")
    imap = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=30)
    with pytest.raises(imaplib.IMAP4.error):
        imap.login(addr, "wrong password")
    imap.logout()
    r = httpx.get(server.base_url + "/api/principal", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401
    r = httpx.get(server.base_url + "/api/principal")
    assert r.status_code == 401

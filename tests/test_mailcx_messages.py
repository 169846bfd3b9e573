"""mail.cx dialect, messages: a signed-up account receives mail at the MX, reads it over the API
(list, body, attachments, source), deletes it (quota freed) and logs in over IMAP with the same
password. Both databases.
"""

from __future__ import annotations

import imaplib
import smtplib
import time
from email.message import EmailMessage

import httpx

from tests.support.mailcx import add_system_domain, bearer, sign_up
from tests.support.server import InProcessServer


def _send(server: InProcessServer, to: str, subject: str, *, attach: bytes | None = None,
          sender: str = "bounce@sender.example") -> None:
    msg = EmailMessage()
    msg["From"] = "Alice <alice@sender.example>"
    msg["To"] = to
    msg["Subject"] = subject
    msg.set_content(f"Hello, this is {subject}.\n")
    msg.add_alternative(f"<p>Hello, this is <b>{subject}</b>.</p>", subtype="html")
    if attach is not None:
        msg.add_attachment(attach, maintype="application", subtype="pdf", filename="report.pdf")
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=30) as smtp:
        smtp.sendmail(sender, [to], msg.as_bytes())


def _wait_count(base: str, token: str, n: int) -> list[dict[str, object]]:
    deadline = time.monotonic() + 15
    while True:
        items: list[dict[str, object]] = httpx.get(f"{base}/api/messages", headers=bearer(token)).json()
        if len(items) >= n or time.monotonic() > deadline:
            return items
        time.sleep(0.1)


def test_mail_flow(server: InProcessServer) -> None:
    add_system_domain(server, "mail.cx")
    acct = sign_up(server, "demo@mail.cx", "supersecret")
    base, tok = server.base_url, acct["token"]
    pdf = b"%PDF-1.4\n" + bytes(range(256)) * 8
    _send(server, "demo@mail.cx", "first")
    _send(server, "demo@mail.cx", "second", attach=pdf)

    items = _wait_count(base, tok, 2)
    assert [i["subject"] for i in items] == ["second", "first"]  # newest first
    it = items[0]
    assert set(it) == {"id", "sender", "from", "subject", "preview_text", "size", "created_at"}
    assert isinstance(it["id"], str) and it["id"].isdigit()
    assert it["sender"] == "bounce@sender.example" and it["from"] == "alice@sender.example"
    assert "Hello, this is second" in str(it["preview_text"])
    assert isinstance(it["size"], int) and it["size"] > len(pdf)
    assert str(it["created_at"]).endswith("Z")

    me = httpx.get(f"{base}/api/me", headers=bearer(tok)).json()
    assert me["used"] == sum(int(i["size"]) for i in items)  # type: ignore[call-overload]

    r = httpx.get(f"{base}/api/messages/{it['id']}", headers=bearer(tok))
    assert r.status_code == 200, r.text
    full = r.json()
    assert full["address"] == "demo@mail.cx" and full["subject"] == "second"
    assert "Hello, this is second." in full["text_body"] and "<b>second</b>" in full["html_body"]
    assert len(full["attachments"]) == 1
    att = full["attachments"][0]
    assert set(att) == {"index", "filename", "content_type", "size"}
    assert att["filename"] == "report.pdf" and att["content_type"] == "application/pdf" and att["size"] == len(pdf)

    r = httpx.get(f"{base}/api/messages/{it['id']}/attachments/{att['index']}", headers=bearer(tok))
    assert r.status_code == 200 and r.content == pdf
    assert r.headers["content-type"] == "application/pdf"
    assert 'filename="report.pdf"' in r.headers["content-disposition"]
    r = httpx.get(f"{base}/api/messages/{it['id']}/attachments/99", headers=bearer(tok))
    assert r.status_code == 404 and r.json()["error"] == "not_found"

    r = httpx.get(f"{base}/api/messages/{it['id']}/source", headers=bearer(tok))
    assert r.status_code == 200 and r.headers["content-type"].startswith("message/rfc822")
    assert b"Subject: second" in r.content and len(r.content) == it["size"]

    # Another account cannot see, read or delete it.
    other = sign_up(server, "other@mail.cx")
    for path in (f"/api/messages/{it['id']}", f"/api/messages/{it['id']}/source"):
        r = httpx.get(base + path, headers=bearer(other["token"]))
        assert r.status_code == 404 and r.json()["error"] == "not_found"
    assert httpx.delete(f"{base}/api/messages/{it['id']}", headers=bearer(other["token"])).status_code == 404
    assert httpx.get(f"{base}/api/messages", headers=bearer(other["token"])).json() == []
    assert httpx.get(f"{base}/api/messages/abc", headers=bearer(tok)).status_code == 404
    r = httpx.get(f"{base}/api/messages?page=0", headers=bearer(tok))
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    assert httpx.get(f"{base}/api/messages?page=2", headers=bearer(tok)).json() == []

    # IMAP with the same password sees both; the API delete is an expunge there.
    imap = imaplib.IMAP4("127.0.0.1", server.ports["imap"])
    imap.login("demo@mail.cx", "supersecret")
    imap.select("INBOX")
    assert imap.search(None, "ALL")[1][0].split() == [b"1", b"2"]

    r = httpx.delete(f"{base}/api/messages/{it['id']}", headers=bearer(tok))
    assert r.status_code == 204 and r.content == b""
    assert httpx.delete(f"{base}/api/messages/{it['id']}", headers=bearer(tok)).status_code == 404
    me2 = httpx.get(f"{base}/api/me", headers=bearer(tok)).json()
    assert me2["used"] == me["used"] - it["size"]  # type: ignore[operator]
    assert [i["subject"] for i in httpx.get(f"{base}/api/messages", headers=bearer(tok)).json()] == ["first"]

    imap.noop()
    assert imap.response("EXPUNGE")[1] == [b"2"]
    assert imap.search(None, "ALL")[1][0].split() == [b"1"]
    imap.logout()


def test_pagination(server: InProcessServer) -> None:
    add_system_domain(server, "mail.cx")
    acct = sign_up(server, "many@mail.cx")
    msg = EmailMessage()
    msg["From"] = "a@sender.example"
    msg["To"] = "many@mail.cx"
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=30) as smtp:
        for i in range(33):
            del msg["Subject"]
            msg["Subject"] = f"m{i:02d}"
            msg.set_content(f"body {i}\n")
            smtp.sendmail("a@sender.example", ["many@mail.cx"], msg.as_bytes())
    _wait_count(server.base_url, acct["token"], 30)
    deadline = time.monotonic() + 15
    while True:
        p2 = httpx.get(f"{server.base_url}/api/messages?page=2", headers=bearer(acct["token"])).json()
        if len(p2) == 3 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    p1 = httpx.get(f"{server.base_url}/api/messages?page=1", headers=bearer(acct["token"])).json()
    assert len(p1) == 30 and len(p2) == 3
    subjects = [m["subject"] for m in p1 + p2]
    assert subjects == [f"m{i:02d}" for i in range(32, -1, -1)]

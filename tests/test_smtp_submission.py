"""Submission (587 STARTTLS, 465 implicit TLS): AUTH over TLS, sender checks, limits, throttling."""

from __future__ import annotations

import base64
import os
import shutil
import smtplib
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import update

from mailwright.services import Services
from tests.support.server import InProcessServer
from tests.support.smtp import PASSWORD, add_domain, add_mailbox, queued, start_server, stored_messages


@pytest.fixture
def server(tmp_path: Path, database_url: str) -> Iterator[InProcessServer]:
    """No plaintext-AUTH exception for loopback: 127.0.0.1 is treated like any client."""
    srv = start_server(tmp_path / "data", database_url, allow_plaintext_auth_on_loopback=False)
    try:
        add_domain(srv, "sub.test")
        add_mailbox(srv, "alice@sub.test")
        add_mailbox(srv, "bob@sub.test")
        yield srv
    finally:
        srv.stop()


def ctx() -> ssl.SSLContext:
    c = ssl.create_default_context()
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE
    return c


def err_text(exc: smtplib.SMTPResponseException) -> str:
    err = exc.smtp_error
    return err.decode() if isinstance(err, bytes) else str(err)


def message(sender: str, to: str, subject: str = "hello") -> bytes:
    return f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n\r\nbody of {subject}\r\n".encode()


def test_auth_only_after_starttls_and_required_for_mail(server: InProcessServer) -> None:
    with smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=30) as smtp:
        smtp.ehlo("client.test")
        assert smtp.has_extn("starttls") and not smtp.has_extn("auth")
        code, text = smtp.docmd("AUTH", "PLAIN AGFsaWNlQHN1Yi50ZXN0AHB3")
        assert code == 538 and text.startswith(b"5.7.11")
        code, text = smtp.mail("alice@sub.test")
        assert code == 530 and text.startswith(b"5.7.0")
        smtp.starttls(context=ctx())
        smtp.ehlo("client.test")
        assert smtp.has_extn("auth")
        assert set(smtp.esmtp_features["auth"].upper().split()) == {"PLAIN", "LOGIN"}
        assert smtp.has_extn("xsavesent")
        with pytest.raises(smtplib.SMTPAuthenticationError) as bad:
            smtp.login("alice@sub.test", "wrong password")
        assert bad.value.smtp_code == 535
        smtp.login("alice@sub.test", PASSWORD)
        assert smtp.sendmail("alice@sub.test", ["bob@sub.test", "carol@remote.test"],
                             message("alice@sub.test", "bob@sub.test")) == {}
    (stored,) = stored_messages(server, "bob@sub.test")
    assert b"Message-ID: " in stored and b"Date: " in stored  # completed by submit
    (entry,) = queued(server)
    assert [r.rcpt for r in entry.recipients] == ["carol@remote.test"] and entry.mail_from == "alice@sub.test"
    assert stored_messages(server, "alice@sub.test", "\\Sent") == []  # no Sent copy unless asked


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_implicit_tls_port_and_both_mechanisms(server: InProcessServer, mech: str) -> None:
    with smtplib.SMTP_SSL("127.0.0.1", server.ports["submissions"], timeout=30, context=ctx()) as smtp:
        smtp.ehlo("client.test")
        assert not smtp.has_extn("starttls")
        smtp.user, smtp.password = "alice@sub.test", PASSWORD
        code, _ = smtp.auth(mech, smtp.auth_plain if mech == "PLAIN" else smtp.auth_login)
        assert code == 235
        # XSAVESENT: the client asks for a Sent copy of this one.
        code, _ = smtp.mail("alice@sub.test", ["XSAVESENT"])
        assert code == 250
        assert smtp.rcpt("bob@sub.test")[0] == 250
        assert smtp.data(message("alice@sub.test", "bob@sub.test", mech))[0] == 250
    assert len(stored_messages(server, "bob@sub.test")) == 1
    (sent,) = stored_messages(server, "alice@sub.test", "\\Sent")
    assert f"Subject: {mech}".encode() in sent


def test_sender_must_be_own_address(server: InProcessServer) -> None:
    with smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=30) as smtp:
        smtp.starttls(context=ctx())
        smtp.login("alice@sub.test", PASSWORD)
        with pytest.raises(smtplib.SMTPDataError) as refused:
            smtp.sendmail("bob@sub.test", ["carol@remote.test"], message("bob@sub.test", "carol@remote.test"))
        assert refused.value.smtp_code == 553 and err_text(refused.value).startswith("5.7.1")
        # Envelope is hers but the From: header is not.
        with pytest.raises(smtplib.SMTPDataError) as refused:
            smtp.sendmail("alice@sub.test", ["carol@remote.test"], message("ceo@bank.test", "carol@remote.test"))
        assert refused.value.smtp_code == 553
        # Unknown local recipient: refused at RCPT already.
        code, text = smtp.mail("alice@sub.test")
        code, text = smtp.rcpt("nobody@sub.test")
        assert code == 550 and text.startswith(b"5.1.1")
    assert queued(server) == []


def test_send_limit_answers_451_with_wait(server: InProcessServer) -> None:
    from mailwright.storage.models import Principal

    async def limit(svc: Services) -> None:
        async with svc.db.write() as s:
            await s.execute(update(Principal).where(Principal.name == "alice@sub.test").values(send_per_hour=1))

    server.run(limit)
    with smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=30) as smtp:
        smtp.starttls(context=ctx())
        smtp.login("alice@sub.test", PASSWORD)
        assert smtp.sendmail("alice@sub.test", ["bob@sub.test"], message("alice@sub.test", "bob@sub.test")) == {}
        with pytest.raises(smtplib.SMTPDataError) as limited:
            smtp.sendmail("alice@sub.test", ["bob@sub.test"], message("alice@sub.test", "bob@sub.test", "2"))
        assert limited.value.smtp_code == 451
        text = err_text(limited.value)
        assert text.startswith("4.7.0") and "try again in" in text
    assert len(stored_messages(server, "bob@sub.test")) == 1


def test_failed_auth_burst_is_throttled(server: InProcessServer) -> None:
    with smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=30) as smtp:
        smtp.starttls(context=ctx())
        smtp.ehlo("client.test")
        wrong = base64.b64encode(b"\0alice@sub.test\0wrong password").decode()
        codes = [smtp.docmd("AUTH", "PLAIN " + wrong) for _ in range(12)]
        assert [c for c, _ in codes[:10]] == [535] * 10
        assert [c for c, _ in codes[10:]] == [454, 454]
        # Locked out: even the right password gets 454 now (no oracle).
        right = base64.b64encode(f"\0alice@sub.test\0{PASSWORD}".encode()).decode()
        code, text = smtp.docmd("AUTH", "PLAIN " + right)
        assert code == 454 and text.startswith(b"4.7.0")


def test_plaintext_auth_on_loopback_when_allowed(tmp_path: Path, database_url: str) -> None:
    srv = start_server(tmp_path / "data", database_url, allow_plaintext_auth_on_loopback=True)
    try:
        add_domain(srv, "sub.test")
        add_mailbox(srv, "alice@sub.test")
        with smtplib.SMTP("127.0.0.1", srv.ports["submission"], timeout=30) as smtp:
            smtp.ehlo("client.test")
            assert smtp.has_extn("auth")
            smtp.login("alice@sub.test", PASSWORD)
            assert smtp.sendmail("alice@sub.test", ["alice@sub.test"], message("alice@sub.test", "self")) == {}
        (stored,) = stored_messages(srv, "alice@sub.test")
        assert b"with ESMTPA" in stored
    finally:
        srv.stop()


def test_swaks_auth_over_starttls(server: InProcessServer) -> None:
    swaks = shutil.which("swaks")
    if swaks is None:
        if os.environ.get("CI") == "true":
            pytest.fail("swaks is not installed (scripts/debian-packages.txt)")
        pytest.skip("swaks is not installed (Debian package swaks)")
    out = subprocess.run(
        [swaks, "--server", f"127.0.0.1:{server.ports['submission']}", "--tls", "--auth", "PLAIN",
         "--auth-user", "alice@sub.test", "--auth-password", PASSWORD, "--from", "alice@sub.test",
         "--to", "bob@sub.test", "--h-From", "alice@sub.test", "--header", "Subject: via swaks",
         "--body", "sent by swaks", "--timeout", "20"],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    (stored,) = stored_messages(server, "bob@sub.test")
    assert b"Subject: via swaks" in stored and b"sent by swaks" in stored
    assert b"with ESMTPSA" in stored

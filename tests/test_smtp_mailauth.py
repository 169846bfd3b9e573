"""The MX applies SPF/DKIM/DMARC against a real DNS server (NSD): pass, reject, quarantine."""

from __future__ import annotations

import smtplib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mailwright.mailauth import DkimKey, dkim_sign, generate_dkim_key
from tests.support.dnsserver import DnsServer, dns_server  # noqa: F401 - fixture
from tests.support.server import InProcessServer
from tests.support.smtp import add_domain, add_mailbox, start_server, stored_messages

KEY, KEY_TXT = generate_dkim_key("ed25519-sha256")

ZONES = {
    "good.test": [("@", "TXT", "v=spf1 ip4:127.0.0.1 -all"), ("s1._domainkey", "TXT", KEY_TXT),
                  ("_dmarc", "TXT", "v=DMARC1; p=reject")],
    "strict.test": [("@", "TXT", "v=spf1 -all"), ("_dmarc", "TXT", "v=DMARC1; p=reject")],
    "careful.test": [("@", "TXT", "v=spf1 -all"), ("_dmarc", "TXT", "v=DMARC1; p=quarantine")],
}


@pytest.fixture
def mx(tmp_path: Path, database_url: str, dns_server: Callable[..., DnsServer]) -> Iterator[InProcessServer]:  # noqa: F811
    dns = dns_server(ZONES)
    srv = start_server(tmp_path / "data", database_url, dns_nameservers=[dns.host], dns_port=dns.port)
    try:
        add_domain(srv, "mx.test")
        add_mailbox(srv, "alice@mx.test")
        yield srv
    finally:
        srv.stop()


def mail(sender: str, subject: str) -> bytes:
    return (f"From: {sender}\r\nTo: alice@mx.test\r\nSubject: {subject}\r\nMessage-ID: <{subject}@x>\r\n\r\n"
            f"{subject} body\r\n").encode()


def test_pass_reject_quarantine(mx: InProcessServer) -> None:
    signed = dkim_sign(mail("news@good.test", "signed"), [DkimKey("good.test", "s1", "ed25519-sha256", KEY)])
    with smtplib.SMTP("127.0.0.1", mx.ports["smtp"], timeout=30) as smtp:
        smtp.ehlo("client.test")
        assert smtp.sendmail("bounce@good.test", ["alice@mx.test"], signed) == {}
        # SPF fails, no DKIM, DMARC p=reject: refused at the end of DATA.
        with pytest.raises(smtplib.SMTPDataError) as refused:
            smtp.sendmail("ceo@strict.test", ["alice@mx.test"], mail("ceo@strict.test", "forged"))
        assert refused.value.smtp_code == 550
        err = refused.value.smtp_error
        assert (err if isinstance(err, bytes) else err.encode()).startswith(b"5.7.1")
        # p=quarantine: accepted, filed in Junk.
        assert smtp.sendmail("info@careful.test", ["alice@mx.test"], mail("info@careful.test", "suspect")) == {}
    (inbox,) = stored_messages(mx, "alice@mx.test")
    head = inbox.split(b"\r\n\r\n", 1)[0]
    assert b"Authentication-Results: mx.test.local;" in head
    assert b"spf=pass smtp.mailfrom=good.test" in head
    assert b"dkim=pass header.d=good.test" in head
    assert b"dmarc=pass" in head
    (junk,) = stored_messages(mx, "alice@mx.test", "\\Junk")
    assert b"suspect body" in junk and b"dmarc=fail" in junk

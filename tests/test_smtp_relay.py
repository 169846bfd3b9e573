"""No open relay: every addressing trick from an unauthenticated client, on the MX and submission.

The domain has a catch-all, the case where tricks like the percent hack are most dangerous: a
naive router would deliver ``user%other@ourdomain`` *somewhere*. Each trick must either be
refused at RCPT or land only in a local mailbox; the outbound queue must stay empty.
"""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import InProcessServer
from tests.support.smtp import RawSMTP, add_domain, add_mailbox, queued, set_catch_all, start_server, stored_messages

TRICKS = [
    "<victim@other.test>",  # plain relay attempt
    "<victim%other.test@mx.test>",  # percent hack
    "<@mx.test,@other.test:victim@other.test>",  # source route
    "<@mx.test:victim@other.test>",
    '<"victim@other.test"@mx.test>',  # quoted local part
    "<victim@other.test@mx.test>",
    "<victim@mx.test@other.test>",
    "<other.test!victim@mx.test>",  # bang path
    "<other.test!victim>",
    "<victim@[127.0.0.1]>",  # IP literals
    "<victim@[IPv6:::1]>",
    "<victim@other.test.>",
    "<victim@mx.test.other.test>",
    "<victim@other.test%mx.test>",
    "victim@other.test",  # no angle brackets
]


@pytest.fixture
def server(tmp_path: Path, database_url: str) -> Iterator[InProcessServer]:
    """Like conftest's, but outbound mail is held in the queue (see start_server)."""
    srv = start_server(tmp_path / "data", database_url)
    try:
        yield srv
    finally:
        srv.stop()



def test_no_trick_relays_from_unauthenticated_client(server: InProcessServer) -> None:
    add_domain(server, "mx.test")
    catch = add_mailbox(server, "postmaster@mx.test")
    set_catch_all(server, "mx.test", catch)
    accepted: list[str] = []
    c = RawSMTP(server.ports["smtp"])
    assert c.cmd("EHLO attacker.test")[0] == 250
    for trick in TRICKS:
        assert c.cmd("MAIL FROM:<attacker@attacker.test>")[0] == 250
        code, text = c.cmd(f"RCPT TO:{trick}")
        assert code in (250, 550, 553, 554, 501), (trick, code, text)
        if code == 250:
            accepted.append(trick)
            assert c.cmd("DATA")[0] == 354
            c.send(b"Subject: relay test\r\n\r\n" + trick.encode() + b"\r\n.\r\n")
            assert c.reply()[0] == 250
        else:
            assert c.cmd("RSET")[0] == 250
    c.cmd("QUIT")
    c.close()
    # Whatever was accepted went to the local catch-all, nothing anywhere else.
    assert queued(server) == []
    assert len(stored_messages(server, "postmaster@mx.test")) == len(accepted)
    # The forms that name another domain are all refused outright.
    for refused in ["<victim@other.test>", "<@mx.test:victim@other.test>", '<"victim@other.test"@mx.test>',
                    "<victim@mx.test@other.test>", "<victim@[127.0.0.1]>", "<victim@other.test.>"]:
        assert refused not in accepted


def test_submission_requires_auth_before_relaying(server: InProcessServer) -> None:
    add_domain(server, "mx.test")
    add_mailbox(server, "alice@mx.test")
    with smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=30) as smtp:
        smtp.ehlo("attacker.test")
        code, text = smtp.mail("alice@mx.test")
        assert code == 530 and text.startswith(b"5.7.0")
        code, _ = smtp.rcpt("victim@other.test")
        assert code == 530
    assert queued(server) == []

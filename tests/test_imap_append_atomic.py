"""MULTIAPPEND is atomic (RFC 3502 §3): if any message cannot be appended, none is."""

from __future__ import annotations

import re

from sqlalchemy import update

from mailwright.services import Services
from mailwright.storage.models import Principal
from tests.imap_support import Raw, make_account, simple_message
from tests.support.server import InProcessServer


def _set_quota(server: InProcessServer, quota_bytes: int) -> None:
    async def go(svc: Services) -> None:
        async with svc.db.write() as s:
            await s.execute(update(Principal).where(Principal.name == "alice@example.test")
                            .values(quota_bytes=quota_bytes))

    server.run(go)


def _status(c: Raw) -> bytes:
    lines = c.ok("STATUS INBOX (MESSAGES UIDNEXT SIZE)")
    return lines[0]


def _multi(*parts: bytes) -> bytes:
    """APPEND INBOX with several LITERAL+ messages; each part is `[flags date ]{n+}`-less text + message."""
    return b"APPEND INBOX" + b"".join(parts)


def _lit(msg: bytes, prefix: bytes = b"") -> bytes:
    return b" " + prefix + b"{%d+}\r\n" % len(msg) + msg


def test_second_message_over_quota_appends_nothing(server: InProcessServer) -> None:
    make_account(server)
    _set_quota(server, 10 * 1024)
    c = Raw(server.ports["imap"])
    c.login()
    before = _status(c)
    assert before == b"* STATUS INBOX (MESSAGES 0 UIDNEXT 1 SIZE 0)"
    small = simple_message(1, body="a" * 3000)
    big = simple_message(2, body="b" * 9000)  # fits alone, not after the first
    _l, tagged = c.cmd(_multi(_lit(small), _lit(big)))
    assert b"NO [OVERQUOTA]" in tagged, tagged
    assert _status(c) == before  # no message, no UID used, no bytes charged
    assert c.ok("GETQUOTAROOT INBOX")[1] == b'* QUOTA "User quota" (STORAGE 0 10)'
    # each fits alone: appended one at a time they succeed, with the UIDs the failed attempt did not use
    _l, tagged = c.cmd(_multi(_lit(small)))
    assert re.match(rb"t\d+ OK \[APPENDUID \d+ 1\]", tagged), tagged
    _l, tagged = c.cmd(_multi(_lit(big)))
    assert b"NO [OVERQUOTA]" in tagged, tagged
    c.ok("SELECT INBOX")
    assert c.ok("FETCH 1:* (UID RFC822.SIZE)") == [b"* 1 FETCH (UID 1 RFC822.SIZE %d)" % len(small)]
    c.close()


def test_bad_second_message_appends_nothing(server: InProcessServer) -> None:
    make_account(server)
    c = Raw(server.ports["imap"])
    c.login()
    before = _status(c)
    m1, m2 = simple_message(1), simple_message(2)
    # a date-time that is not one: the whole command is BAD
    _l, tagged = c.cmd(_multi(_lit(m1), _lit(m2, b'"31-Foo-2024 10:00:00 +0000" ')))
    assert b" BAD " in tagged, tagged
    # an empty second message: NO
    _l, tagged = c.cmd(_multi(_lit(m1), _lit(b"")))
    assert b" NO " in tagged, tagged
    assert _status(c) == before
    c.close()


def test_multiappend_stores_all_in_order(server: InProcessServer) -> None:
    make_account(server)
    c = Raw(server.ports["imap"])
    c.login()
    msgs = [simple_message(i) for i in range(3)]
    _l, tagged = c.cmd(_multi(_lit(msgs[0], b"(\\Seen) "), _lit(msgs[1], b'"01-Feb-2024 12:00:00 +0100" '),
                              _lit(msgs[2], b"(\\Flagged $Work) ")))
    m = re.match(rb"t\d+ OK \[APPENDUID (\d+) 1:3\]", tagged)
    assert m, tagged
    c.ok("SELECT INBOX")
    lines = c.ok("FETCH 1:3 (UID FLAGS INTERNALDATE BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert len(lines) == 3
    assert lines[0].startswith(b"* 1 FETCH (UID 1 FLAGS (\\Seen) ")
    assert b'INTERNALDATE "01-Feb-2024 11:00:00 +0000"' in lines[1]
    assert lines[2].startswith(b"* 3 FETCH (UID 3 FLAGS (\\Flagged $Work) ")
    for i, ln in enumerate(lines):
        assert b"Subject: message %d" % i in ln
    assert _status(c) == b"* STATUS INBOX (MESSAGES 3 UIDNEXT 4 SIZE %d)" % sum(len(x) for x in msgs)
    c.close()

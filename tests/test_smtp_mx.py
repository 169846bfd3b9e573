"""The MX: ESMTP dialect, RCPT answers, trace headers, lists/catch-all/SRS, one stored copy."""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailwright.delivery import srs
from mailwright.services import Services
from tests.support.server import InProcessServer
from tests.support.smtp import (
    RawSMTP,
    add_domain,
    add_list,
    add_mailbox,
    imap_messages,
    queued,
    set_catch_all,
    set_tenant_status,
    start_server,
    stored_messages,
)

MSG = b"From: Bob <bob@remote.test>\r\nTo: x@mx.test\r\nSubject: hi\r\nMessage-ID: <m1@remote.test>\r\n\r\nHello.\r\n"


@pytest.fixture
def server(tmp_path: Path, database_url: str) -> Iterator[InProcessServer]:
    """Like conftest's, but outbound mail is held in the queue (see start_server)."""
    srv = start_server(tmp_path / "data", database_url)
    try:
        yield srv
    finally:
        srv.stop()



def tls_ctx() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def test_ehlo_extensions_and_enhanced_codes(server: InProcessServer) -> None:
    add_domain(server, "mx.test")
    add_mailbox(server, "alice@mx.test")
    c = RawSMTP(server.ports["smtp"])
    assert c.greeting[0] == 220
    code, text = c.cmd("EHLO client.test")
    assert code == 250
    kws = {ln.split()[0] for ln in text.splitlines()[1:]}
    assert {"PIPELINING", "8BITMIME", "SMTPUTF8", "SIZE", "ENHANCEDSTATUSCODES", "STARTTLS"} <= kws
    assert "AUTH" not in kws  # no AUTH on the MX
    assert c.cmd("MAIL FROM:<bob@remote.test>") == (250, "2.0.0 OK")
    code, text = c.cmd("RCPT TO:<alice@mx.test>")
    assert code == 250 and text.startswith("2.1.5")
    code, text = c.cmd("RCPT TO:<nobody@mx.test>")
    assert code == 550 and text.startswith("5.1.1")
    code, text = c.cmd("RCPT TO:<someone@elsewhere.test>")
    assert code == 554 and text.startswith("5.7.1")
    code, text = c.cmd("AUTH PLAIN AGFsaWNlAHB3")
    assert code == 503 and text.startswith("5.5.1")
    code, text = c.cmd("BOGUS")
    assert code == 500 and text.startswith("5.5.2")
    assert c.cmd("QUIT")[0] == 221
    c.close()


def test_pipelining_two_messages_in_one_write(server: InProcessServer) -> None:
    add_domain(server, "mx.test")
    addr = "alice@mx.test"
    add_mailbox(server, addr)
    c = RawSMTP(server.ports["smtp"])
    c.cmd("EHLO client.test")
    c.send(b"MAIL FROM:<bob@remote.test>\r\nRCPT TO:<alice@mx.test>\r\nDATA\r\n")
    assert [c.reply()[0] for _ in range(3)] == [250, 250, 354]
    # The end of one message, then the whole next transaction, in one packet.
    c.send(b"Subject: one\r\n\r\nfirst\r\n.\r\nMAIL FROM:<bob@remote.test>\r\nRCPT TO:<alice@mx.test>\r\nDATA\r\n")
    assert [c.reply()[0] for _ in range(4)] == [250, 250, 250, 354]
    c.send(b"Subject: two\r\n\r\nsecond\r\n.\r\nQUIT\r\n")
    assert c.reply()[0] == 250
    assert c.reply()[0] == 221
    msgs = stored_messages(server, addr)
    assert len(msgs) == 2 and b"first" in msgs[0] and b"second" in msgs[1]


def test_null_sender_accepted(server: InProcessServer) -> None:
    add_domain(server, "mx.test")
    add_mailbox(server, "alice@mx.test")
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=30) as smtp:
        assert smtp.sendmail("<>", ["alice@mx.test"], MSG) == {}
    assert len(stored_messages(server, "alice@mx.test")) == 1


def test_received_and_authentication_results_over_starttls(server: InProcessServer) -> None:
    add_domain(server, "mx.test")
    add_mailbox(server, "alice@mx.test")
    forged = b"Authentication-Results: mx.test.local; dkim=pass header.d=bank.test\r\n" + MSG
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=30) as smtp:
        smtp.ehlo("client.test")
        smtp.starttls(context=tls_ctx())
        smtp.ehlo("client.test")
        assert "starttls" not in smtp.esmtp_features
        assert smtp.sendmail("bob@remote.test", ["alice@mx.test"], forged) == {}
    (stored,) = imap_messages(server, "alice@mx.test")
    head = stored.split(b"\r\n\r\n", 1)[0]
    assert head.startswith(b"Authentication-Results: mx.test.local;")
    assert b"Received: from client.test ([127.0.0.1])" in head
    assert b"by mx.test.local (Mailwright) with ESMTPS id " in head
    assert b"(using TLSv1." in head and b"for <alice@mx.test>;" in head
    assert b"dkim=pass header.d=bank.test" not in head  # the forged field claiming our id is gone
    assert head.count(b"Authentication-Results:") == 1


def test_two_recipients_one_stored_copy(server: InProcessServer) -> None:
    add_domain(server, "mx.test")
    add_mailbox(server, "alice@mx.test", aliases=["ally@mx.test"])
    add_mailbox(server, "bob@mx.test")
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=30) as smtp:
        # alice named twice (address + alias): one copy for her; one for bob; one blob in all.
        assert smtp.sendmail("carol@remote.test", ["alice@mx.test", "ally@mx.test", "bob@mx.test"], MSG) == {}
    assert len(stored_messages(server, "alice@mx.test")) == 1
    assert len(stored_messages(server, "bob@mx.test")) == 1

    async def blobs(svc: Services) -> int:
        from sqlalchemy import func, select

        from mailwright.storage.models import Blob

        async with svc.db.read() as s:
            return int((await s.execute(select(func.count()).select_from(Blob))).scalar_one())

    assert server.run(blobs) == 1


def test_quota_and_suspended_tenant(server: InProcessServer) -> None:
    add_domain(server, "mx.test")
    add_mailbox(server, "tiny@mx.test", quota=2000)
    pid = add_mailbox(server, "paused@mx.test")
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=30) as smtp:
        smtp.ehlo("client.test")
        big = MSG + b"x" * 1500 + b"\r\n"
        assert smtp.sendmail("bob@remote.test", ["tiny@mx.test"], big) == {}  # fits (quota 2000)
        # now nearly full: a second message does not fit -> 452 4.2.2 (try later)
        code, text = smtp.mail("bob@remote.test", [f"SIZE={len(big)}"])
        assert code == 250
        code, text = smtp.rcpt("tiny@mx.test")
        assert code == 452 and text.startswith(b"4.2.2")
        smtp.rset()
        # a message larger than the whole quota -> 552 5.2.2 (permanent)
        smtp.mail("bob@remote.test", ["SIZE=5000"])
        code, text = smtp.rcpt("tiny@mx.test")
        assert code == 552 and text.startswith(b"5.2.2")
        smtp.rset()
    set_tenant_status(server, pid, "suspended")
    try:
        with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=30) as smtp:
            smtp.ehlo("client.test")
            smtp.mail("bob@remote.test")
            code, text = smtp.rcpt("paused@mx.test")
            assert code == 451 and text.startswith(b"4.3.2")
    finally:
        set_tenant_status(server, pid, "active")


def test_too_many_recipients(tmp_path, database_url) -> None:  # type: ignore[no-untyped-def]
    srv = start_server(tmp_path / "data", database_url, smtp_max_recipients=3)
    try:
        add_domain(srv, "mx.test")
        add_mailbox(srv, "alice@mx.test", aliases=[f"a{i}@mx.test" for i in range(5)])
        c = RawSMTP(srv.ports["smtp"])
        c.cmd("EHLO client.test")
        c.cmd("MAIL FROM:<bob@remote.test>")
        codes = [c.cmd(f"RCPT TO:<a{i}@mx.test>") for i in range(4)]
        assert [x[0] for x in codes] == [250, 250, 250, 452]
        assert codes[3][1].startswith("4.5.3")
        c.close()
    finally:
        srv.stop()


def test_list_expansion_forwards_external_members_with_srs(server: InProcessServer) -> None:
    add_domain(server, "mx.test")
    add_mailbox(server, "alice@mx.test")
    list_id = add_list(server, "team@mx.test", ["alice@mx.test", "outside@far.test"])
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=30) as smtp:
        assert smtp.sendmail("bob@remote.test", ["team@mx.test"], MSG) == {}
    assert len(stored_messages(server, "alice@mx.test")) == 1
    (entry,) = queued(server)
    assert [r.rcpt for r in entry.recipients] == ["outside@far.test"]
    assert entry.kind == "forward" and entry.principal_id == list_id
    assert entry.mail_from.upper().startswith("SRS0=") and entry.mail_from.endswith("@mx.test")
    secret = srs.srs_secret(server.svc)  # type: ignore[arg-type]
    assert srs.srs_reverse(entry.mail_from, secret) == "bob@remote.test"

    # The far side bounces the forward to the SRS address: it goes back to bob, sender <>.
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=30) as smtp:
        assert smtp.sendmail("<>", [entry.mail_from], b"Subject: bounce\r\n\r\nundeliverable\r\n") == {}
        smtp.ehlo("client.test")
        smtp.mail("<>")
        code, text = smtp.rcpt("SRS0=xxxx=AA=remote.test=bob@mx.test")  # forged hash
        assert code == 550 and text.startswith(b"5.1.1")
    bounce = [e for e in queued(server) if e.id != entry.id]
    assert len(bounce) == 1 and bounce[0].mail_from == ""
    assert [r.rcpt for r in bounce[0].recipients] == ["bob@remote.test"]
    assert len(stored_messages(server, "alice@mx.test")) == 1  # the bounce was not filed locally


def test_catch_all(server: InProcessServer) -> None:
    add_domain(server, "mx.test")
    pid = add_mailbox(server, "postmaster@mx.test")
    set_catch_all(server, "mx.test", pid)
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=30) as smtp:
        assert smtp.sendmail("bob@remote.test", ["whoever@mx.test"], MSG) == {}
    assert len(stored_messages(server, "postmaster@mx.test")) == 1
    assert queued(server) == []



def test_postmaster_is_accepted_for_every_hosted_domain(tmp_path: Path, database_url: str) -> None:
    """RFC 5321 4.5.1: postmaster@ each domain, and a bare <Postmaster>, reach a person."""
    srv = start_server(tmp_path / "pm", database_url, hostname="pm.test")
    try:
        add_domain(srv, "pm.test")
        add_mailbox(srv, "owner@pm.test")  # the domain's first account
        add_mailbox(srv, "second@pm.test")
        add_domain(srv, "empty.test")  # no account: nobody to give it to
        c = RawSMTP(srv.ports["smtp"])
        c.cmd("EHLO client.test")
        assert c.cmd("MAIL FROM:<reporter@remote.test>")[0] == 250
        assert c.cmd("RCPT TO:<PostMaster@pm.test>")[0] == 250
        assert c.cmd("RCPT TO:<Postmaster>")[0] == 250  # bare form: postmaster@<our hostname>
        code, text = c.cmd("RCPT TO:<postmaster@empty.test>")
        assert code == 550 and text.startswith("5.1.1")
        assert c.cmd("RCPT TO:<postmaster@elsewhere.test>")[0] == 554  # still no relay
        assert c.cmd("DATA")[0] == 354
        c.send(b"From: r@remote.test\r\nSubject: dmarc report\r\n\r\nreport\r\n.\r\n")
        assert c.reply()[0] == 250
        c.cmd("QUIT")
        c.close()
        got = imap_messages(srv, "owner@pm.test")
        assert len(got) == 1 and b"dmarc report" in got[0]  # one copy for both RCPTs
        assert imap_messages(srv, "second@pm.test") == []
    finally:
        srv.stop()


def test_huge_message_ids_are_stored_and_still_thread(server: InProcessServer) -> None:
    """A 3,000-character Message-ID used to exceed PostgreSQL's index entry limit (451 forever)."""
    from sqlalchemy import select

    from mailwright.storage.models import Message

    add_domain(server, "mx.test")
    add_mailbox(server, "alice@mx.test")
    long_id = "<" + "".join(f"{i:x}" for i in range(900))[:3000] + "@remote.test>"
    parent = (f"From: bob@remote.test\r\nSubject: root\r\nMessage-ID: {long_id}\r\n\r\nfirst\r\n").encode()
    reply = (f"From: bob@remote.test\r\nSubject: Re: root\r\nMessage-ID: <r1@remote.test>\r\n"
             f"In-Reply-To: {long_id}\r\nReferences: {long_id}\r\n\r\nsecond\r\n").encode()
    unrelated = b"From: bob@remote.test\r\nSubject: other\r\nMessage-ID: <u1@remote.test>\r\n\r\nthird\r\n"
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=30) as c:
        for raw in (parent, reply, unrelated):
            c.sendmail("bob@remote.test", ["alice@mx.test"], raw)
    got = stored_messages(server, "alice@mx.test")
    assert [g.count(long_id.encode()) for g in got] == [1, 2, 0]  # the bytes themselves are intact

    async def threads(svc: Services) -> list[str]:
        async with svc.db.read() as s:
            return list((await s.execute(select(Message.thread_id).order_by(Message.id))).scalars())

    t = server.run(threads)
    assert t[0] == t[1] != t[2]

"""IMAP protocol behaviour over raw sockets and imaplib, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import imaplib
import re
import smtplib

import pytest
from sqlalchemy import select

from mailwright.mailstore.messages import SEARCH_TEXT_MAX
from mailwright.services import Services
from mailwright.storage.models import Message
from tests.imap_support import Raw, deliver_raw, make_account, simple_message
from tests.support.server import InProcessServer

MULTIPART = (
    b"From: Carol <carol@remote.test>\r\nTo: alice@example.test\r\nSubject: parts\r\n"
    b"Message-ID: <mp@remote.test>\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="XX"\r\n\r\npreamble\r\n--XX\r\n'
    b"Content-Type: text/plain; charset=us-ascii\r\n\r\nfirst part\r\n--XX\r\n"
    b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    + base64.b64encode(b"\x00\x01binary\x02") + b"\r\n--XX--\r\n"
)


@pytest.fixture
def imap(server: InProcessServer) -> Raw:
    make_account(server)
    for i in range(1, 6):
        deliver_raw(server, "alice@example.test", simple_message(i))
    c = Raw(server.ports["imap"])
    c.login()
    yield c
    c.close()


def test_capabilities_and_greeting(server: InProcessServer) -> None:
    make_account(server)
    c = Raw(server.ports["imap"])
    assert c.greeting.startswith(b"* OK [CAPABILITY IMAP4rev1 IMAP4rev2")
    assert b"STARTTLS" in c.greeting and b"AUTH=PLAIN" in c.greeting
    c.login()
    caps = c.ok("CAPABILITY")[0].decode()
    for cap in ("IMAP4rev1 ", "IMAP4rev2", "LITERAL+", "SASL-IR", "ID", "ENABLE", "IDLE", "NAMESPACE", "UNSELECT",
                "UIDPLUS", "MOVE", "CHILDREN", "SPECIAL-USE", "LIST-EXTENDED", "LIST-STATUS", "ESEARCH",
                "SEARCHRES", "CONDSTORE", "QRESYNC", "QUOTA", "BINARY", "APPENDLIMIT=", "MULTIAPPEND", "SORT",
                "THREAD=REFERENCES", "STATUS=SIZE"):
        assert cap in caps, cap
    lines = c.ok('ID ("name" "test")')
    assert lines[0].startswith(b"* ID (")
    assert c.ok("NAMESPACE") == [b'* NAMESPACE (("" "/")) NIL NIL']
    c.close()


def test_select_fetch_store(imap: Raw) -> None:
    lines = imap.ok("SELECT INBOX")
    assert b"* 5 EXISTS" in lines
    assert any(ln.startswith(b"* OK [UIDVALIDITY ") for ln in lines)
    assert b"* OK [UIDNEXT 6] Predicted next UID" in lines
    assert b"* OK [UNSEEN 1] First unseen." in lines
    lines = imap.ok("FETCH 1:2 (FLAGS RFC822.SIZE INTERNALDATE UID)")
    assert len(lines) == 2 and re.match(rb"\* 1 FETCH \(FLAGS \(\) RFC822.SIZE \d+ INTERNALDATE \"", lines[0])
    lines = imap.ok("UID FETCH 3 (ENVELOPE)")
    assert lines[0].startswith(b"* 3 FETCH (UID 3 ENVELOPE (") and b'"message 3"' in lines[0]
    lines = imap.ok("FETCH 2 BODY.PEEK[HEADER.FIELDS (subject)]")
    assert b"BODY[HEADER.FIELDS (SUBJECT)] {22}\r\nSubject: message 2\r\n\r\n" in lines[0]
    lines = imap.ok("FETCH 2 (FLAGS)")
    assert lines == [b"* 2 FETCH (FLAGS ())"]
    lines = imap.ok("FETCH 2 BODY[TEXT]<0.5>")
    assert lines[0].startswith(b"* 2 FETCH (BODY[TEXT]<0> {5}\r\nhello") and b"FLAGS (\\Seen)" in lines[0]
    lines = imap.ok("STORE 1:3 +FLAGS (\\Flagged $Work)")
    assert lines[0] == b"* 1 FETCH (FLAGS (\\Flagged $Work))"
    assert lines[1] == b"* 2 FETCH (FLAGS (\\Flagged \\Seen $Work))"
    assert imap.ok("STORE 1 -FLAGS.SILENT (\\Flagged)") == []
    lines = imap.ok("UID STORE 3 FLAGS (\\Deleted)")
    assert lines == [b"* 3 FETCH (UID 3 FLAGS (\\Deleted))"]
    _l, tagged = imap.cmd("FETCH 9 FLAGS")
    assert b" BAD " in tagged
    assert imap.ok("UID FETCH 100:200 FLAGS") == []
    lines = imap.ok("EXPUNGE")
    assert lines == [b"* 3 EXPUNGE"]
    lines = imap.ok("FETCH 3 (UID)")
    assert lines == [b"* 3 FETCH (UID 4)"]
    lines = imap.ok("FETCH 1 (BODYSTRUCTURE BODY)")
    assert b'BODYSTRUCTURE ("text" "plain" ("charset" "utf-8") NIL NIL "7bit"' in lines[0]
    lines = imap.ok("FETCH 1 FAST")
    assert b"FLAGS" in lines[0] and b"RFC822.SIZE" in lines[0]
    lines = imap.ok("FETCH 1 (RFC822.HEADER)")
    assert b"RFC822.HEADER {" in lines[0]


def test_bad_commands_keep_connection(imap: Raw) -> None:
    for bad in ["FETCH", "FOO BAR", 'LOGIN "unterminated', "SELECT", "STORE 1 +FLAGS (\\Bogus)",
                "FETCH 1 (BODY[HEADER.FIELDS ()])", "SEARCH FROM", "UID", "\x01\x02", "(((((", "a" * 70000]:
        _lines, tagged = imap.cmd(bad)
        assert b" BAD " in tagged or b" NO " in tagged, (bad, tagged)
    imap.send(b"\r\n")
    imap.ok("NOOP")
    imap.ok("SELECT INBOX")
    _l, tagged = imap.cmd("FETCH 1:* (FLAGS) (CHANGEDSINCE x)")
    assert b" BAD " in tagged
    imap.ok("NOOP")


def test_literals_and_append(imap: Raw) -> None:
    msg = simple_message(99, subject="appended")
    imap.send(b"a1 APPEND Drafts (\\Draft) \"01-Feb-2024 12:00:00 +0100\" {%d}\r\n" % len(msg))
    assert imap.line().startswith(b"+ ")
    imap.send(msg + b"\r\n")
    _lines, tagged = imap.until("a1")
    assert re.match(rb"a1 OK \[APPENDUID \d+ 1\]", tagged), tagged
    # LITERAL+ and MULTIAPPEND
    imap.send(b"a2 APPEND Drafts {%d+}\r\n" % len(msg) + msg + b" (\\Seen) {%d+}\r\n" % len(msg) + msg + b"\r\n")
    _lines, tagged = imap.until("a2")
    assert re.match(rb"a2 OK \[APPENDUID \d+ 2:3\]", tagged), tagged
    imap.ok("SELECT Drafts")
    lines = imap.ok("FETCH 1 (FLAGS INTERNALDATE)")
    assert lines == [b'* 1 FETCH (FLAGS (\\Draft) INTERNALDATE "01-Feb-2024 11:00:00 +0000")']
    _l, tagged = imap.cmd("APPEND Nope {3+}\r\nabc")
    assert b"[TRYCREATE]" in tagged
    # a synchronising literal over the limit is refused before it is sent
    imap.send(b"a3 APPEND INBOX {999999999999}\r\n")
    assert imap.line().startswith(b"a3 NO [TOOBIG]")
    imap.ok("NOOP")
    # appending to the selected mailbox announces EXISTS
    lines = imap.ok(b"APPEND Drafts {%d+}\r\n" % len(msg) + msg)
    assert b"* 4 EXISTS" in lines


def test_nonsync_literal_too_big_closes(imap: Raw) -> None:
    imap.send(b"a1 APPEND INBOX {999999999999+}\r\n")
    assert b"TOOBIG" in imap.line()
    with pytest.raises((ConnectionError, OSError)):
        for _ in range(3):
            imap.line()


def test_search_sort_thread(server: InProcessServer) -> None:
    make_account(server)
    deliver_raw(server, "alice@example.test", simple_message(1, subject="Apple pie", frm="zed@remote.test"))
    deliver_raw(server, "alice@example.test", simple_message(2, subject="banana", body="tropical fruit"))
    deliver_raw(server, "alice@example.test",
                simple_message(3, subject="Re: Apple pie", extra="In-Reply-To: <m1@remote.test>\r\n"
                               "References: <m1@remote.test>\r\n"))
    deliver_raw(server, "alice@example.test", MULTIPART)
    c = Raw(server.ports["imap"])
    c.login()
    c.ok("SELECT INBOX")
    assert c.ok("SEARCH ALL") == [b"* SEARCH 1 2 3 4"]
    assert c.ok("SEARCH SUBJECT apple") == [b"* SEARCH 1 3"]
    assert c.ok("SEARCH BODY tropical") == [b"* SEARCH 2"]
    assert c.ok("SEARCH OR FROM zed FROM carol") == [b"* SEARCH 1 4"]
    assert c.ok("SEARCH NOT (SUBJECT apple)") == [b"* SEARCH 2 4"]
    assert c.ok("UID SEARCH 2:3") == [b"* SEARCH 2 3"]
    assert c.ok("SEARCH LARGER 10 SMALLER 100000 UNSEEN") == [b"* SEARCH 1 2 3 4"]
    assert c.ok("SEARCH SENTSINCE 3-Jan-2024 SENTBEFORE 4-Jan-2024") == [b"* SEARCH 2"]
    assert c.ok("SEARCH HEADER Message-ID <mp@remote.test>") == [b"* SEARCH 4"]
    assert c.ok("SEARCH CHARSET UTF-8 TEXT fruit") == [b"* SEARCH 2"]
    _l, tagged = c.cmd("SEARCH CHARSET KOI8-R TEXT x")
    assert b"[BADCHARSET" in tagged
    assert c.ok("SEARCH RETURN (MIN MAX COUNT ALL) SUBJECT apple")[0].endswith(b"MIN 1 MAX 3 COUNT 2 ALL 1,3")
    assert c.ok("UID SEARCH RETURN (SAVE) SUBJECT apple") == []
    assert c.ok("FETCH $ (UID)") == [b"* 1 FETCH (UID 1)", b"* 3 FETCH (UID 3)"]
    assert c.ok("SEARCH UID $") == [b"* SEARCH 1 3"]
    assert c.ok("SORT (SUBJECT) UTF-8 ALL") == [b"* SORT 1 3 2 4"]
    assert c.ok("SORT (REVERSE ARRIVAL) UTF-8 ALL") == [b"* SORT 4 3 2 1"]
    assert c.ok("UID SORT (FROM) UTF-8 ALL") == [b"* SORT 2 3 4 1"]
    assert c.ok("THREAD REFERENCES UTF-8 ALL") == [b"* THREAD (1 3)(2)(4)"]
    lines = c.ok("FETCH 4 (BODY.PEEK[2] BINARY.PEEK[2] BINARY.SIZE[2] BODY.PEEK[1.MIME])")
    assert b"BINARY[2] ~{9}\r\n\x00\x01binary\x02" in lines[0] and b"BINARY.SIZE[2] 9" in lines[0]
    c.close()


def test_search_beyond_the_stored_text(server: InProcessServer) -> None:
    """Only the first SEARCH_TEXT_MAX characters of a message's text are stored; BODY/TEXT
    still find words past them (read from the blob) and still tell body from header."""
    make_account(server)
    filler = "".join(f"line {i} of plain filler text\r\n" for i in range(1200))  # ~36 KiB
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"]) as smtp:
        for n, tail in ((1, "needle-zebra"), (2, "nothing here")):
            smtp.sendmail("x@remote.test", ["alice@example.test"],
                          f"From: x@remote.test\r\nTo: alice@example.test\r\nSubject: long {n}\r\n"
                          f"Message-ID: <long{n}@remote.test>\r\n\r\n{filler}{tail}\r\n".encode())

    async def stored(svc: Services) -> list[int]:
        async with svc.db.read() as s:
            return [len(t) for t in (await s.execute(select(Message.search_text))).scalars()]

    assert server.run(stored) == [SEARCH_TEXT_MAX, SEARCH_TEXT_MAX]
    c = Raw(server.ports["imap"])
    c.login()
    c.ok("SELECT INBOX")
    assert c.ok("SEARCH BODY needle-zebra") == [b"* SEARCH 1"]
    assert c.ok("SEARCH TEXT NEEDLE-ZEBRA") == [b"* SEARCH 1"]
    assert c.ok('SEARCH BODY "line 3 of"') == [b"* SEARCH 1 2"]
    assert c.ok('SEARCH BODY "long 1"') == [b"* SEARCH"]  # the subject is not body text
    assert c.ok('SEARCH TEXT "long 1"') == [b"* SEARCH 1"]
    c.close()


def test_mailboxes_list_status(imap: Raw) -> None:
    lines = imap.ok('LIST "" "*"')
    assert lines[0] == b'* LIST (\\HasNoChildren) "/" INBOX'
    assert b'* LIST (\\HasNoChildren \\Sent) "/" Sent' in lines
    imap.ok('CREATE "Projects/2024/Q1"')
    imap.ok("CREATE &AMk-t&AOk-")  # Été in modified UTF-7
    lines = imap.ok('LIST "" "%"')
    assert b'* LIST (\\HasChildren) "/" Projects' in lines
    assert b'* LIST (\\HasNoChildren) "/" &AMk-t&AOk-' in lines
    lines = imap.ok('LIST "Projects/" "%"')
    assert lines == [b'* LIST (\\HasChildren) "/" Projects/2024']
    lines = imap.ok('LIST (SPECIAL-USE) "" "*" RETURN (STATUS (MESSAGES UNSEEN))')
    assert b'* LIST (\\HasNoChildren \\Trash) "/" Trash' in lines
    assert b"* STATUS Trash (MESSAGES 0 UNSEEN 0)" in lines
    lines = imap.ok("STATUS INBOX (MESSAGES UIDNEXT UNSEEN SIZE HIGHESTMODSEQ DELETED)")
    assert re.match(rb"\* STATUS INBOX \(MESSAGES 5 UIDNEXT 6 UNSEEN 5 SIZE \d+ HIGHESTMODSEQ \d+ DELETED 0\)",
                    lines[0])
    _l, tagged = imap.cmd('CREATE "Projects"')
    assert b"[ALREADYEXISTS]" in tagged
    _l, tagged = imap.cmd("DELETE Projects")
    assert b" NO " in tagged
    imap.ok('RENAME "Projects" "Work"')
    lines = imap.ok('LIST "" "Work*"')
    assert b'* LIST (\\HasNoChildren) "/" Work/2024/Q1' in lines
    imap.ok('DELETE "Work/2024/Q1"')
    imap.ok("SUBSCRIBE Work")
    assert b'* LSUB () "/" Work' in imap.ok('LSUB "" "*"')
    imap.ok("UNSUBSCRIBE Work")
    assert b'* LSUB () "/" Work' not in imap.ok('LSUB "" "*"')
    _l, tagged = imap.cmd("DELETE INBOX")
    assert b" NO " in tagged
    imap.ok("RENAME INBOX Old")
    assert imap.ok("STATUS INBOX (MESSAGES)") == [b"* STATUS INBOX (MESSAGES 0)"]
    assert imap.ok("STATUS Old (MESSAGES)") == [b"* STATUS Old (MESSAGES 5)"]
    assert imap.ok('LIST "" ""') == [b'* LIST (\\Noselect) "/" ""']


def test_copy_move_uidplus(imap: Raw) -> None:
    imap.ok("SELECT INBOX")
    _l, tagged = imap.cmd("COPY 1:2 Archive")
    assert re.match(rb"t\d+ OK \[COPYUID \d+ 1:2 1:2\]", tagged), tagged
    lines = imap.ok("MOVE 2:3 Trash")
    assert re.match(rb"\* OK \[COPYUID \d+ 2:3 1:2\]", lines[0]) and lines[1:] == [b"* 2 EXPUNGE", b"* 2 EXPUNGE"]
    lines = imap.ok("UID MOVE 5 Trash")
    assert lines[1:] == [b"* 3 EXPUNGE"]
    _l, tagged = imap.cmd("COPY 1 Missing")
    assert b"[TRYCREATE]" in tagged
    assert imap.ok("STATUS Trash (MESSAGES)") == [b"* STATUS Trash (MESSAGES 3)"]
    imap.ok("STORE 1 +FLAGS (\\Deleted)")
    assert imap.ok("UID EXPUNGE 4") == []
    assert imap.ok("UID EXPUNGE 1") == [b"* 1 EXPUNGE"]
    imap.ok("UNSELECT")
    imap.ok("EXAMINE Trash")
    _l, tagged = imap.cmd("STORE 1 +FLAGS (\\Seen)")
    assert b" NO " in tagged
    imap.ok("CLOSE")


def test_updates_between_connections(server: InProcessServer, imap: Raw) -> None:
    other = Raw(server.ports["imap"])
    other.login()
    other.ok("SELECT INBOX")
    imap.ok("SELECT INBOX")
    other.ok("STORE 2 +FLAGS (\\Deleted)")
    other.ok("STORE 1 +FLAGS (\\Answered)")
    other.ok("EXPUNGE")
    deliver_raw(server, "alice@example.test", simple_message(6))
    # during FETCH: new mail and flag changes, but no expunge (message numbers stay put)
    lines = imap.ok("FETCH 3 (UID)")
    assert lines == [b"* 6 EXISTS", b"* 1 FETCH (FLAGS (\\Answered))", b"* 3 FETCH (UID 3)"]
    assert imap.ok("SEARCH ALL") == [b"* SEARCH 1 3 4 5 6"]  # no renumbering
    assert imap.ok("NOOP") == [b"* 2 EXPUNGE"]
    assert imap.ok("NOOP") == []
    other.close()


def test_login_rules(server: InProcessServer) -> None:
    make_account(server)
    c = Raw(server.ports["imap"])
    _l, tagged = c.cmd("LOGIN alice@example.test wrong")
    assert b"NO [AUTHENTICATIONFAILED]" in tagged
    _l, tagged = c.cmd("SELECT INBOX")
    assert b" NO " in tagged or b" BAD " in tagged
    ir = base64.b64encode(b"\x00alice@example.test\x00correct horse battery").decode()
    c.ok(f"AUTHENTICATE PLAIN {ir}")
    c.close()
    c = Raw(server.ports["imap"])
    c.send(b"a AUTHENTICATE LOGIN\r\n")
    assert c.line() == b"+ VXNlcm5hbWU6"
    c.send(base64.b64encode(b"alice@example.test") + b"\r\n")
    assert c.line() == b"+ UGFzc3dvcmQ6"
    c.send(base64.b64encode(b"correct horse battery") + b"\r\n")
    assert c.line().startswith(b"a OK")
    c.close()
    # STARTTLS, then imaplib over TLS
    import ssl

    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    m = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=30)
    m.starttls(ctx)
    m.login("alice@example.test", "correct horse battery")
    assert m.select("INBOX")[0] == "OK"
    m.logout()
    m2 = imaplib.IMAP4_SSL("127.0.0.1", server.ports["imaps"], ssl_context=ctx, timeout=30)
    m2.login("alice@example.test", "correct horse battery")
    m2.logout()


def test_plaintext_refused_off_loopback_setting(tmp_path, database_url: str) -> None:  # type: ignore[no-untyped-def]
    srv = InProcessServer(tmp_path / "d2", database_url, allow_plaintext_auth_on_loopback=False).start()
    try:
        make_account(srv)
        c = Raw(srv.ports["imap"])
        assert b"LOGINDISABLED" in c.greeting and b"STARTTLS" in c.greeting
        _l, tagged = c.cmd('LOGIN alice@example.test "correct horse battery"')
        assert b"PRIVACYREQUIRED" in tagged
        c.close()
    finally:
        srv.stop()


def test_quota(server: InProcessServer) -> None:
    from sqlalchemy import update

    from mailwright.storage.models import Principal

    make_account(server)

    async def setq(svc):  # type: ignore[no-untyped-def]
        async with svc.db.write() as s:
            await s.execute(update(Principal).where(Principal.name == "alice@example.test").values(
                quota_bytes=10 * 1024))

    server.run(setq)
    c = Raw(server.ports["imap"])
    c.login()
    lines = c.ok("GETQUOTAROOT INBOX")
    assert lines == [b'* QUOTAROOT INBOX "User quota"', b'* QUOTA "User quota" (STORAGE 0 10)']
    big = simple_message(1, body="x" * 12000)
    _l, tagged = c.cmd(b"APPEND INBOX {%d+}\r\n" % len(big) + big)
    assert b"NO [OVERQUOTA]" in tagged
    c.ok("NOOP")
    c.close()

"""CONDSTORE and QRESYNC (RFC 7162): MODSEQ, CHANGEDSINCE, UNCHANGEDSINCE, VANISHED."""

from __future__ import annotations

import re

from tests.imap_support import Raw, deliver_raw, make_account, simple_message
from tests.support.server import InProcessServer


def _modseq(line: bytes) -> int:
    m = re.search(rb"MODSEQ \((\d+)\)", line)
    assert m, line
    return int(m.group(1))


def test_condstore_and_qresync(server: InProcessServer) -> None:
    make_account(server)
    for i in range(1, 6):
        deliver_raw(server, "alice@example.test", simple_message(i))
    c = Raw(server.ports["imap"])
    c.login()
    lines = c.ok("SELECT INBOX (CONDSTORE)")
    hms = int(next(re.search(rb"HIGHESTMODSEQ (\d+)", ln).group(1) for ln in lines  # type: ignore[union-attr]
                   if b"HIGHESTMODSEQ" in ln))
    uidvalidity = next(ln for ln in lines if b"UIDVALIDITY" in ln).split()[3].rstrip(b"]").decode()
    lines = c.ok("FETCH 1:5 (MODSEQ)")
    assert len(lines) == 5 and all(_modseq(ln) <= hms for ln in lines)
    lines = c.ok("STORE 2 +FLAGS (\\Flagged)")
    m2 = _modseq(lines[0])
    assert m2 > hms and lines[0].startswith(b"* 2 FETCH (FLAGS (\\Flagged) MODSEQ")
    assert c.ok(f"FETCH 1:* (FLAGS) (CHANGEDSINCE {hms})") == [f"* 2 FETCH (FLAGS (\\Flagged) MODSEQ ({m2}))".encode()]
    assert c.ok(f"SEARCH MODSEQ {m2}") == [f"* SEARCH 2 (MODSEQ {m2})".encode()]
    _lines, tagged = c.cmd(f"STORE 1:3 (UNCHANGEDSINCE {hms}) +FLAGS (\\Seen)")
    assert b"[MODIFIED 2]" in tagged
    other = Raw(server.ports["imap"])
    other.login()
    other.ok("SELECT INBOX")
    other.ok("STORE 4 +FLAGS (\\Deleted)")
    other.ok("EXPUNGE")
    other.close()
    c.ok("LOGOUT")
    c.close()

    q = Raw(server.ports["imap"])
    q.login()
    assert q.ok("ENABLE QRESYNC") == [b"* ENABLED QRESYNC"]
    lines = q.ok(f"SELECT INBOX (QRESYNC ({uidvalidity} {m2}))")
    assert b"* VANISHED (EARLIER) 4" in lines
    assert any(ln.startswith(b"* 1 FETCH (UID 1 FLAGS (\\Seen) MODSEQ") for ln in lines)
    lines = q.ok(f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {hms} VANISHED)")
    assert lines[0] == b"* VANISHED (EARLIER) 4"
    q.ok("UID STORE 5 +FLAGS (\\Deleted)")
    assert q.ok("EXPUNGE")[0] == b"* VANISHED 5"
    # a stale UIDVALIDITY gets no resync data
    q.ok("UNSELECT")
    lines = q.ok(f"SELECT INBOX (QRESYNC (1 {hms}))")
    assert not any(b"VANISHED" in ln for ln in lines)
    q.close()

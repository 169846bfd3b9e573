"""IDLE: new mail, flag changes and expunges by other connections and other nodes within 1 s."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.imap_support import Raw, deliver_raw, make_account, simple_message
from tests.support.server import InProcessServer


def _idle_lines(c: Raw, want: int, timeout: float = 1.0) -> list[bytes]:
    """Lines that arrive during IDLE within `timeout` seconds (at most `want`)."""
    out: list[bytes] = []
    end = time.monotonic() + timeout
    c.sock.settimeout(0.05)
    while len(out) < want and time.monotonic() < end:
        try:
            out.append(c.line())
        except TimeoutError:
            continue
    c.sock.settimeout(20)
    return out


def test_idle_sees_other_connections(server: InProcessServer) -> None:
    make_account(server)
    for i in range(3):
        deliver_raw(server, "alice@example.test", simple_message(i))
    a, b = Raw(server.ports["imap"]), Raw(server.ports["imap"])
    a.login()
    b.login()
    a.ok("SELECT INBOX")
    b.ok("SELECT INBOX")
    a.send(b"i1 IDLE\r\n")
    assert a.line().startswith(b"+ ")
    deliver_raw(server, "alice@example.test", simple_message(9))
    assert _idle_lines(a, 1) == [b"* 4 EXISTS"]
    b.ok("STORE 1 +FLAGS (\\Seen)")
    assert _idle_lines(a, 1) == [b"* 1 FETCH (FLAGS (\\Seen))"]
    b.ok("STORE 2 +FLAGS (\\Deleted)")
    b.ok("EXPUNGE")
    lines = _idle_lines(a, 2)
    assert lines[-1] == b"* 2 EXPUNGE"
    a.send(b"DONE\r\n")
    _l, tagged = a.until("i1")
    assert tagged.startswith(b"i1 OK")
    a.ok("NOOP")
    a.close()
    b.close()


def test_idle_across_nodes_postgres(tmp_path: Path, database_url: str) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("cross-process IDLE goes through PostgreSQL LISTEN/NOTIFY")
    one = InProcessServer(tmp_path / "one", database_url).start()
    two = InProcessServer(tmp_path / "two", database_url).start()
    try:
        make_account(one)
        c = Raw(two.ports["imap"])
        c.login()
        c.ok("SELECT INBOX")
        c.send(b"i1 IDLE\r\n")
        assert c.line().startswith(b"+ ")
        start = time.monotonic()
        deliver_raw(one, "alice@example.test", simple_message(1))
        assert _idle_lines(c, 1, timeout=1.0) == [b"* 1 EXISTS"]
        assert time.monotonic() - start < 1.5
        c.send(b"DONE\r\n")
        c.until("i1")
        c.close()
    finally:
        two.stop()
        one.stop()


def test_autologout(tmp_path: Path) -> None:
    srv = InProcessServer(tmp_path / "d", f"sqlite+aiosqlite:///{tmp_path / 'x.db'}", imap_autologout_seconds=1).start()
    try:
        c = Raw(srv.ports["imap"])
        time.sleep(1.5)
        assert c.line().startswith(b"* BYE")
        c.close()
    finally:
        srv.stop()

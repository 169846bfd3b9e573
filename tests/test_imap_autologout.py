"""The autologout timer (one lazily re-armed timer per connection, session._watch): it counts
only the time spent waiting for a command, restarts with every command, and ends the session
with BYE once a client stays silent for the whole timeout."""

from __future__ import annotations

import time
from pathlib import Path

from tests.imap_support import Raw, make_account
from tests.support.server import InProcessServer


def test_commands_keep_session_then_silence_ends_it(tmp_path: Path) -> None:
    srv = InProcessServer(tmp_path / "d", f"sqlite+aiosqlite:///{tmp_path / 'x.db'}",
                          imap_autologout_seconds=1).start()
    try:
        make_account(srv)
        c = Raw(srv.ports["imap"])
        c.login()
        c.ok("SELECT INBOX")
        start = time.monotonic()
        while time.monotonic() - start < 2.6:  # 2.6 s of activity, never 1 s of silence
            c.ok("NOOP")
            time.sleep(0.3)
        c.sock.settimeout(5)
        t0 = time.monotonic()
        assert c.line().startswith(b"* BYE")
        waited = time.monotonic() - t0
        assert 0.5 < waited < 2.5, waited  # the timeout counts from the last command, not from login
        c.close()
        # a second connection on the same server is not affected by the first one's timer
        d = Raw(srv.ports["imap"])
        d.login()
        d.ok("NOOP")
        d.close()
    finally:
        srv.stop()

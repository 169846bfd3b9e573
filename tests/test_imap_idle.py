"""IDLE: new mail, flag changes and expunges by other connections, workers and nodes within 1 s."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import smtplib
import time
from pathlib import Path

import pytest

from tests.imap_support import Raw, deliver_raw, make_account, simple_message
from tests.support import pg
from tests.support.server import InProcessServer, ServeProcess

PASSWORD = "correct horse battery"


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


def _start_idle(port: int, user: str = "alice@example.test") -> Raw:
    c = Raw(port)
    c.login(user)
    c.ok("SELECT INBOX")
    c.send(b"i1 IDLE\r\n")
    assert c.line().startswith(b"+ ")
    return c


def _done(c: Raw) -> None:
    c.send(b"DONE\r\n")
    _lines, tagged = c.until("i1")
    assert tagged.startswith(b"i1 OK"), tagged
    c.close()


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


def test_idle_hears_only_its_mailbox_and_ends_on_done(server: InProcessServer) -> None:
    """Mail to another mailbox or another account is not announced; a line other than DONE is BAD."""
    make_account(server)
    make_account(server, "bob@example.test")
    inbox = _start_idle(server.ports["imap"])
    other = _start_idle(server.ports["imap"], "bob@example.test")
    noselect = Raw(server.ports["imap"])
    noselect.login()
    noselect.send(b"i1 IDLE\r\n")
    assert noselect.line().startswith(b"+ ")
    deliver_raw(server, "alice@example.test", simple_message(1), mailbox="Archive")
    deliver_raw(server, "alice@example.test", simple_message(2))
    assert _idle_lines(inbox, 2) == [b"* 1 EXISTS"]
    assert _idle_lines(other, 1, timeout=0.3) == []
    assert _idle_lines(noselect, 1, timeout=0.3) == []
    other.send(b"NOOP\r\n")
    _l, tagged = other.until("i1")
    assert tagged.startswith(b"i1 BAD")
    other.ok("NOOP")
    _done(inbox)
    noselect.send(b"DONE\r\n")
    assert noselect.until("i1")[1].startswith(b"i1 OK")
    other.close()
    noselect.close()


def test_idle_fan_out_to_many_connections(tmp_path: Path) -> None:
    """One delivery reaches 300 idlers of the account within 1 s; 300 idlers of another hear nothing."""
    srv = InProcessServer(tmp_path / "d", f"sqlite+aiosqlite:///{tmp_path / 'x.db'}").start()
    try:
        make_account(srv)
        make_account(srv, "bob@example.test")
        port = srv.ports["imap"]

        async def go() -> tuple[float, list[float], int, dict[str, float]]:
            async def open_idle(user: str) -> asyncio.StreamReader:
                r, w = await asyncio.open_connection("127.0.0.1", port)
                writers.append(w)
                await r.readline()
                w.write(f'a LOGIN {user} "{PASSWORD}"\r\nb SELECT INBOX\r\nc IDLE\r\n'.encode())
                while not (await r.readline()).startswith(b"+"):
                    pass
                return r

            async def first_line(r: asyncio.StreamReader, wait: float) -> bytes:
                try:
                    return await asyncio.wait_for(r.readline(), wait)
                except TimeoutError:
                    return b""

            async def timed_line(r: asyncio.StreamReader) -> bytes:
                line = await first_line(r, 5)
                arrivals.append(time.monotonic() - t0)
                return line

            writers: list[asyncio.StreamWriter] = []
            sem = asyncio.Semaphore(50)

            async def limited(user: str) -> asyncio.StreamReader:
                async with sem:
                    return await open_idle(user)

            alice = await asyncio.gather(*(limited("alice@example.test") for _ in range(300)))
            bob = await asyncio.gather(*(limited("bob@example.test") for _ in range(300)))
            await asyncio.to_thread(deliver_raw, srv, "alice@example.test", simple_message(1))
            arrivals: list[float] = []
            # Where the time goes if it is late: the server loop's first turn after the
            # delivery, full garbage collections (process-wide: they stop both loops), CPU.
            server_turn: list[float] = []
            full_gcs: list[float] = []

            def on_gc(phase: str, info: dict[str, int]) -> None:
                if info["generation"] == 2:
                    full_gcs.append(time.monotonic() * (1 if phase == "stop" else -1))

            # The server shares this process with the whole test session, and a full
            # collection walks every object earlier tests left behind: one took 1.09 s inside
            # this window in a full CI run (both loops stopped; reported by the diagnostics
            # below). A `serve` process carries no such heap. Frozen, it is not walked; what
            # the server and the clients allocate from here on still is.
            gc.collect()
            gc.freeze()
            gc.callbacks.append(on_gc)
            cpu0 = time.process_time()
            t0 = time.monotonic()
            srv.loop.call_soon_threadsafe(lambda: server_turn.append(time.monotonic() - t0))
            try:
                got = await asyncio.gather(*(timed_line(r) for r in alice))
            finally:
                gc.callbacks.remove(on_gc)
                gc.unfreeze()
            took = time.monotonic() - t0
            diag = {"server_turn": round(server_turn[0], 3) if server_turn else -1.0,
                    "full_gc_s": round(sum(full_gcs), 3), "cpu_s": round(time.process_time() - cpu0, 3)}
            assert got == [b"* 1 EXISTS\r\n"] * len(alice)
            stray = await asyncio.gather(*(first_line(r, 0.2) for r in bob))
            for w in writers:
                w.close()
            return took, sorted(arrivals), sum(1 for s in stray if s), diag

        took, arrivals, stray, diag = asyncio.run(go())
        # On failure, say whether every connection was late (the server's fan-out started
        # late) or a few stragglers were (their own sessions, or TCP).
        spread = {f"p{q}": round(arrivals[min(len(arrivals) - 1, len(arrivals) * q // 100)], 3)
                  for q in (0, 50, 90, 99)}
        assert took < 1.0, (took, spread, diag)
        assert stray == 0
    finally:
        srv.stop()


def test_autologout_during_idle(tmp_path: Path) -> None:
    srv = InProcessServer(tmp_path / "d", f"sqlite+aiosqlite:///{tmp_path / 'x.db'}", imap_autologout_seconds=1).start()
    try:
        make_account(srv)
        c = _start_idle(srv.ports["imap"])
        c.sock.settimeout(5)
        t0 = time.monotonic()
        assert c.line() == b"* BYE Disconnected for inactivity."
        assert c.line().startswith(b"i1 NO")
        assert 0.8 < time.monotonic() - t0 < 3
        c.close()
    finally:
        srv.stop()


def test_autologout(tmp_path: Path) -> None:
    srv = InProcessServer(tmp_path / "d", f"sqlite+aiosqlite:///{tmp_path / 'x.db'}", imap_autologout_seconds=1).start()
    try:
        c = Raw(srv.ports["imap"])
        time.sleep(1.5)
        assert c.line().startswith(b"* BYE")
        c.close()
    finally:
        srv.stop()


# ---- other processes


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


def test_idle_survives_lost_listen_connection(tmp_path: Path) -> None:
    """PostgreSQL drops the LISTEN connection: the bus reconnects and idlers still hear changes."""
    pg.require()
    url, name = pg.fresh_database()
    one = InProcessServer(tmp_path / "one", url).start()
    two = InProcessServer(tmp_path / "two", url).start()
    try:
        make_account(one)
        c = _start_idle(two.ports["imap"])
        pg.run(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' "
               "AND query LIKE 'LISTEN%'")
        # Whether this lands before the reconnect (bus.resync) or after (NOTIFY), it must arrive.
        deliver_raw(one, "alice@example.test", simple_message(1))
        assert _idle_lines(c, 1, timeout=3.0) == [b"* 1 EXISTS"]
        time.sleep(0.5)
        t0 = time.monotonic()
        deliver_raw(one, "alice@example.test", simple_message(2))
        assert _idle_lines(c, 1, timeout=1.0) == [b"* 2 EXISTS"]
        assert time.monotonic() - t0 < 1.0
        _done(c)
    finally:
        two.stop()
        one.stop()
        pg.drop(name)


def _provision(srv: ServeProcess, token: str, addr: str) -> None:
    import httpx

    h = {"Authorization": f"Bearer {token}"}
    base = f"http://127.0.0.1:{srv.ports['http']}"
    httpx.post(f"{base}/api/principal", headers=h, json={"name": addr.split("@")[1], "type": "domain"}, timeout=30)
    r = httpx.post(f"{base}/api/principal", headers=h, timeout=30,
                   json={"name": addr, "type": "individual", "secrets": [PASSWORD], "emails": [addr]})
    assert r.status_code == 200, r.text


def _children(pid: int) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if int((p / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(p.name))
            except (OSError, IndexError, ValueError):
                pass
    return out


def _serving_pid(client: Raw, pids: list[int]) -> int:
    """Which of the worker processes holds the server end of this client's connection."""
    port, server_port = client.sock.getsockname()[1], client.sock.getpeername()[1]
    inode = ""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            f = line.split()  # local, remote address; inode 0 = TIME_WAIT leftovers of old connections
            if int(f[2].rsplit(":", 1)[1], 16) == port and int(f[1].rsplit(":", 1)[1], 16) == server_port \
                    and f[9] != "0":
                inode = f[9]
    assert inode, "server end of the connection not found"
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                if os.readlink(fd) == f"socket:[{inode}]":
                    return pid
            except OSError:
                pass
    raise AssertionError("no worker holds the connection")


def _idle_on_every_worker(port: int, workers: list[int]) -> list[Raw]:
    """IDLE connections held by each worker process.

    Which worker accepts is the kernel's choice (one may win every race), so while the first
    connection's worker is stopped (SIGSTOP) the next one can only go to the other."""
    first = _start_idle(port)
    held = _serving_pid(first, workers)
    os.kill(held, signal.SIGSTOP)
    try:
        second = _start_idle(port)  # the stopped worker cannot accept it, the other one must
    finally:
        os.kill(held, signal.SIGCONT)
    conns = [first, second, _start_idle(port), _start_idle(port)]
    assert {_serving_pid(c, workers) for c in conns[:2]} == set(workers)
    return conns


def test_idle_across_sqlite_workers(tmp_path: Path) -> None:
    """`serve --workers 2` on SQLite: an idler in either worker hears mail and changes made in the other."""
    token = "tok-" + os.urandom(8).hex()
    data = tmp_path / "data"
    proc = ServeProcess(data, f"sqlite+aiosqlite:///{data / 'mailwright.db'}",
                        extra_env={"MAILWRIGHT_ADMIN_TOKEN": token}, args=["--workers", "2"]).start()
    assert proc.proc is not None
    conns: list[Raw] = []
    try:
        _provision(proc, token, "alice@example.test")
        workers = _children(proc.proc.pid)
        assert len(workers) == 2
        conns = _idle_on_every_worker(proc.ports["imap"], workers)
        for i in range(1, 4):  # SMTP lands on either worker; three rounds make both likely
            with smtplib.SMTP("127.0.0.1", proc.ports["smtp"], timeout=30) as s:
                s.sendmail("bob@remote.test", ["alice@example.test"], simple_message(i))
            t0 = time.monotonic()
            for c in conns:
                assert _idle_lines(c, 1, timeout=max(0.05, t0 + 1.0 - time.monotonic())) == [
                    f"* {i} EXISTS".encode()], f"round {i}"
        changer = Raw(proc.ports["imap"])
        changer.login()
        changer.ok("SELECT INBOX")
        changer.ok("STORE 1 +FLAGS (\\Deleted)")
        changer.ok("EXPUNGE")
        t0 = time.monotonic()
        for c in conns:
            lines = _idle_lines(c, 2, timeout=max(0.05, t0 + 1.0 - time.monotonic()))
            assert lines[-1:] == [b"* 1 EXPUNGE"], lines
        changer.close()
        for c in conns:
            _done(c)
        conns = []
    finally:
        for c in conns:
            c.close()
        code = proc.kill(signal.SIGTERM)
    assert code == 0, proc.output[-3000:]


def test_idle_across_serve_processes_postgres(tmp_path: Path) -> None:
    """Two `serve` processes on one PostgreSQL database: LISTEN/NOTIFY carries the change within 1 s."""
    pg.require()
    url, name = pg.fresh_database()
    token = "tok-" + os.urandom(8).hex()
    env = {"MAILWRIGHT_ADMIN_TOKEN": token}
    one = two = None
    try:
        one = ServeProcess(tmp_path / "one", url, extra_env=env).start()
        two = ServeProcess(tmp_path / "two", url, extra_env=env).start()
        _provision(one, token, "alice@example.test")
        conns = [_start_idle(two.ports["imap"]) for _ in range(3)]
        with smtplib.SMTP("127.0.0.1", one.ports["smtp"], timeout=30) as s:
            s.sendmail("bob@remote.test", ["alice@example.test"], simple_message(1))
        t0 = time.monotonic()
        for c in conns:
            assert _idle_lines(c, 1, timeout=max(0.05, t0 + 1.0 - time.monotonic())) == [b"* 1 EXISTS"]
        changer = Raw(one.ports["imap"])
        changer.login()
        changer.ok("SELECT INBOX")
        changer.ok("STORE 1 +FLAGS (\\Flagged)")
        t0 = time.monotonic()
        for c in conns:
            assert _idle_lines(c, 1, timeout=max(0.05, t0 + 1.0 - time.monotonic())) == [
                b"* 1 FETCH (FLAGS (\\Flagged))"]
        changer.close()
        for c in conns:
            _done(c)
    finally:
        for p in (two, one):
            if p is not None and p.proc is not None and p.proc.poll() is None:
                p.kill(signal.SIGTERM)
        pg.drop(name)

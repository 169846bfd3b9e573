"""IDLE at scale: memory of N idle IDLE connections, and how fast new mail reaches them.

Starts `python -m mailwright serve` (SQLite unless --database-url; --workers N for several
worker processes), creates --users accounts, and opens N connections that LOGIN, SELECT INBOX
and IDLE: --watch of them belong to the watched user, the rest are spread over the others
(the idlers that must not slow the watched user's notice down). Then, --samples times, one
message is delivered to the watched user over SMTP and the time until *every* watched IDLE
connection has read its untagged EXISTS is measured, from the moment the SMTP client connects
and from the 250 after DATA (the message is committed then). Reports the server's RSS (all
its processes), the setup time, and p50/max of the samples. Targets (issue 5): 10,000 idle
IDLE connections in one process under 1 GiB RSS; new mail announced within 1 s.

    .venv/bin/python bench/imap_idle_bench.py --connections 10000
    .venv/bin/python bench/imap_idle_bench.py --connections 2000 --workers 2

Needs `ulimit -n` above N + 1000 in both processes (client and server run on this machine).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import smtplib
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.support.server import ServeProcess  # noqa: E402

ADMIN = "bench-admin-token-0123456789"
DOMAIN = "bench.test"
PASSWORD = "correct horse battery"
Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def tree_rss_kib(pid: int) -> int:
    """RSS of the serve process and its forked workers."""
    pids = [pid]
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if int((p / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    pids.append(int(p.name))
            except (OSError, IndexError, ValueError):
                pass
    kib = 0
    for p2 in pids:
        try:
            for line in Path(f"/proc/{p2}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    kib += int(line.split()[1])
        except OSError:
            pass
    return kib


def tree_cpu_s(pid: int) -> float:
    """utime + stime of the serve process and its workers, seconds."""
    total = 0.0
    for p in [pid, *[int(c.name) for c in Path("/proc").iterdir() if c.name.isdigit() and _ppid(c) == pid]]:
        try:
            f = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            pass
    return total


def _ppid(p: Path) -> int:
    try:
        return int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


def user(i: int) -> str:
    return f"idle{i}@{DOMAIN}"


async def open_idle(port: int, who: str, sem: asyncio.Semaphore) -> Conn:
    async with sem:
        r, w = await asyncio.open_connection("127.0.0.1", port, limit=4096)
        await r.readline()
        w.write(f'a LOGIN {who} "{PASSWORD}"\r\nb SELECT INBOX\r\nc IDLE\r\n'.encode())
        while True:
            line = await r.readline()
            if not line:
                raise ConnectionError("closed during setup")
            if line.startswith(b"+"):
                return r, w
            if line.startswith((b"a NO", b"a BAD", b"b NO", b"b BAD")):
                raise RuntimeError(line.decode())


async def wait_exists(reader: asyncio.StreamReader) -> float:
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("IDLE connection closed")
        if line.endswith(b" EXISTS\r\n"):
            return time.monotonic()


def send_one(port: int, to: str, i: int) -> tuple[float, float]:
    """Deliver one message; (time the client started, time of the 250 after DATA)."""
    t0 = time.monotonic()
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as s:
        s.sendmail("x@remote.test", [to], f"From: x@remote.test\r\nTo: {to}\r\nSubject: wake {i}\r\n"
                   f"Message-ID: <wake{i}.{os.getpid()}@remote.test>\r\n\r\nup {i}\r\n".encode())
        t250 = time.monotonic()
    return t0, t250


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p * (len(xs) - 1))))]


async def main(a: argparse.Namespace) -> dict[str, object]:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    tmp = Path(tempfile.mkdtemp(prefix="mw-idle-"))
    url = a.database_url or f"sqlite+aiosqlite:///{tmp / 'mw.db'}"
    args = ["--workers", str(a.workers)] if a.workers > 1 else []
    # No SPF/DKIM/DMARC at the MX (as imap_bench.py): their DNS lookups for remote.test once
    # took 5 s of one SMTP session, which says nothing about IDLE.
    env = {"MAILWRIGHT_ADMIN_TOKEN": ADMIN, "MAILWRIGHT_SMTP_VERIFY_INBOUND": "false"}
    srv = ServeProcess(tmp / "data", url, extra_env=env, args=args).start()
    assert srv.proc is not None
    port = srv.ports["imap"]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{srv.ports['http']}",
                                     headers={"Authorization": f"Bearer {ADMIN}"}, timeout=60) as api:
            await api.post("/api/principal", json={"name": DOMAIN, "type": "domain"})
            for i in range(a.users):
                r = await api.post("/api/principal", json={"name": user(i), "type": "individual",
                                                           "secrets": [PASSWORD], "emails": [user(i)]})
                assert r.status_code == 200, r.text
        base = tree_rss_kib(srv.proc.pid)
        sem = asyncio.Semaphore(a.concurrency)
        others = [user(1 + i % max(1, a.users - 1)) for i in range(a.connections - a.watch)]
        t0 = time.monotonic()
        watched = await asyncio.gather(*(open_idle(port, user(0), sem) for _ in range(a.watch)))
        idlers: list[Conn] = []
        step = 1000
        for k in range(0, len(others), step):
            idlers += await asyncio.gather(*(open_idle(port, who, sem) for who in others[k:k + step]))
            print(f"  {a.watch + len(idlers)} connections, {time.monotonic() - t0:.0f} s", file=sys.stderr)
        setup = time.monotonic() - t0
        # This client holds N connections too: its own full garbage collections (0.3-0.6 s at
        # 10,000) would be counted as the server's latency. Park the setup's objects and keep
        # the collector off while measuring.
        gc.collect()
        gc.freeze()
        gc.disable()
        await asyncio.sleep(2)
        rss = tree_rss_kib(srv.proc.pid)
        n = len(watched) + len(idlers)
        print(f"{n} IDLE connections ({a.watch} of the watched user, {len(idlers)} of {a.users - 1} others) "
              f"set up in {setup:.1f} s ({n / setup:.0f}/s)")
        print(f"server RSS: {rss / 1024:.0f} MiB (before: {base / 1024:.0f} MiB); "
              f"{(rss - base) / max(n, 1):.1f} KiB per connection")
        # What N idle connections cost while nothing happens (timers, keepalives every 2 min).
        c0, w0 = tree_cpu_s(srv.proc.pid), time.monotonic()
        await asyncio.sleep(a.idle_window)
        idle_cpu = (tree_cpu_s(srv.proc.pid) - c0) / (time.monotonic() - w0)
        print(f"server CPU while {n} connections idle for {a.idle_window:.0f} s: {idle_cpu * 100:.1f} % of a core")
        from_start: list[float] = []
        from_250: list[float] = []
        spy = None
        if a.profile:  # py-spy from the same venv; --gil: only what holds the event loop's thread
            spy = await asyncio.create_subprocess_exec(
                str(Path(sys.executable).parent / "py-spy"), "record", "--gil", "-r", "200", "-f", "raw",
                "-o", a.profile, "-p", str(srv.proc.pid), "--subprocesses", stdout=asyncio.subprocess.DEVNULL)
            await asyncio.sleep(2)
        for i in range(a.samples):
            waits = [asyncio.ensure_future(wait_exists(rd)) for rd, _w in watched]
            s0, s250 = await asyncio.to_thread(send_one, srv.ports["smtp"], user(0), i)
            try:
                seen = await asyncio.wait_for(asyncio.gather(*waits), 30)
            except TimeoutError:
                print(f"sample {i}: not every watched connection saw EXISTS within 30 s")
                raise
            from_start.append(max(seen) - s0)
            from_250.append(max(seen) - s250)
            print(f"  sample {i}: all {a.watch} saw EXISTS {from_start[-1]:.3f} s after the SMTP client started, "
                  f"{from_250[-1]:.3f} s after the 250 (SMTP took {s250 - s0:.3f} s)")
            await asyncio.sleep(a.pause)
        if spy is not None:
            spy.send_signal(2)
            await spy.wait()
        res = {"connections": n, "workers": a.workers, "users": a.users, "watch": a.watch,
               "setup_s": round(setup, 1), "idle_cpu_pct": round(idle_cpu * 100, 1),
               "rss_mib": round(rss / 1024), "rss_before_mib": round(base / 1024),
               "notify_from_start_p50_s": round(statistics.median(from_start), 3),
               "notify_from_start_max_s": round(max(from_start), 3),
               "notify_from_250_p50_s": round(statistics.median(from_250), 3),
               "notify_from_250_max_s": round(max(from_250), 3),
               "samples": a.samples}
        print(f"new mail -> EXISTS on all {a.watch} watched connections, {a.samples} samples: "
              f"from SMTP start p50 {res['notify_from_start_p50_s']} s, max {res['notify_from_start_max_s']} s; "
              f"from the 250 p50 {res['notify_from_250_p50_s']} s, max {res['notify_from_250_max_s']} s")
        print(f"RESULT {json.dumps(res)}")
        print(f"RSS {'OK' if rss < 1024 * 1024 else 'OVER'} (target 1024 MiB); notice "
              f"{'OK' if max(from_start) < 1.0 else 'OVER'} (target 1 s)")
        for _r, w in watched + idlers:
            w.close()
        return res
    except BaseException:
        srv.kill(15)
        print(srv.output[-4000:], file=sys.stderr)
        raise
    finally:
        if srv.proc.poll() is None:
            srv.kill(15)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--connections", type=int, default=10000)
    ap.add_argument("--users", type=int, default=100, help="accounts; user 0 is the watched one")
    ap.add_argument("--watch", type=int, default=20, help="IDLE connections of the watched user")
    ap.add_argument("--samples", type=int, default=7)
    ap.add_argument("--pause", type=float, default=1.0, help="seconds between samples")
    ap.add_argument("--concurrency", type=int, default=100, help="connections being set up at once")
    ap.add_argument("--idle-window", type=float, default=10.0,
                    help="seconds of doing nothing over which the server's CPU is measured "
                         "(> 120 + setup time to include the keepalives)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--database-url", default="")
    ap.add_argument("--profile", default="", help="py-spy collapsed stacks of the server during the samples")
    asyncio.run(main(ap.parse_args()))

"""How much memory do N idle IMAP IDLE connections cost one Mailwright process?

Starts `python -m mailwright serve` (SQLite, one worker), creates an account, opens N
connections that LOGIN, SELECT INBOX and IDLE, then reads the server's RSS from /proc and
checks that IDLE still announces new mail to every connection within a second.
Target (issue 5): 10,000 idle IDLE connections under 1 GiB RSS.

    .venv/bin/python bench/imap_idle_bench.py --connections 10000

Needs `ulimit -n` above 2 x N (client and server sockets both live on this machine).
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.support.server import ServeProcess  # noqa: E402

ADMIN = "bench-admin-token-0123456789"
USER, PASSWORD = "idle@bench.test", "correct horse battery"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def open_idle(port: int, sem: asyncio.Semaphore) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    async with sem:
        r, w = await asyncio.open_connection("127.0.0.1", port, limit=4096)
        await r.readline()
        w.write(f'a LOGIN {USER} "{PASSWORD}"\r\nb SELECT INBOX\r\nc IDLE\r\n'.encode())
        while True:
            line = await r.readline()
            if not line:
                raise ConnectionError("closed during setup")
            if line.startswith(b"+"):
                return r, w
            if line.startswith((b"a NO", b"a BAD", b"b NO", b"b BAD")):
                raise RuntimeError(line.decode())


async def main(n: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    tmp = Path(tempfile.mkdtemp(prefix="mw-idle-"))
    srv = ServeProcess(tmp / "data", f"sqlite+aiosqlite:///{tmp / 'mw.db'}",
                       extra_env={"MAILWRIGHT_ADMIN_TOKEN": ADMIN}).start()
    assert srv.proc is not None
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{srv.ports['http']}",
                                     headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30) as api:
            await api.post("/api/principal", json={"name": "bench.test", "type": "domain"})
            r = await api.post("/api/principal", json={"name": USER, "type": "individual", "secrets": [PASSWORD],
                                                       "emails": [USER]})
            assert r.status_code == 200, r.text
        base = rss_kib(srv.proc.pid)
        sem = asyncio.Semaphore(100)
        t0 = time.monotonic()
        # A first small batch warms the login cache and the allocator; the marginal cost per
        # connection is measured on the rest.
        first = max(1, min(100, n // 10))
        conns = await asyncio.gather(*(open_idle(srv.ports["imap"], sem) for _ in range(first)))
        await asyncio.sleep(1)
        warm = rss_kib(srv.proc.pid)
        conns += await asyncio.gather(*(open_idle(srv.ports["imap"], sem) for _ in range(n - first)))
        setup = time.monotonic() - t0
        await asyncio.sleep(2)
        rss = rss_kib(srv.proc.pid)
        print(f"{n} IDLE connections set up in {setup:.1f} s")
        print(f"server RSS: {rss / 1024:.0f} MiB (before: {base / 1024:.0f} MiB, after {first}: "
              f"{warm / 1024:.0f} MiB); marginal {(rss - warm) / max(n - first, 1):.1f} KiB per connection")
        # New mail must reach every idler within a second.
        import smtplib

        t1 = time.monotonic()
        with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=30) as s:
            s.sendmail("x@remote.test", [USER], b"From: x@remote.test\r\nSubject: wake\r\n\r\nup\r\n")
        sent = time.monotonic()

        async def wait_exists(reader: asyncio.StreamReader) -> float:
            while True:
                line = await reader.readline()
                if b"EXISTS" in line:
                    return time.monotonic()

        times = await asyncio.wait_for(asyncio.gather(*(wait_exists(rd) for rd, _ in conns)), 60)
        print(f"SMTP accept took {sent - t1:.2f} s; all {n} idlers saw EXISTS "
              f"{max(times) - sent:.2f} s after the 250 (median {sorted(times)[n // 2] - sent:.2f} s)")
        print(f"RESULT connections={n} rss_mib={rss / 1024:.0f} target_mib=1024 "
              f"{'OK' if rss < 1024 * 1024 else 'OVER'}")
        for _r, w in conns:
            w.close()
    finally:
        srv.kill(15)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--connections", type=int, default=10000)
    asyncio.run(main(ap.parse_args().connections))

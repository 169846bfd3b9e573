"""storage.sqlite_lock.WriterLock: one writer across processes, the waiter woken at release,
and a cancelled wait never leaves the lock held."""

from __future__ import annotations

import asyncio
import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path

from mailwright.storage.sqlite_lock import WriterLock

HOLDER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(float(sys.argv[2]))
print(repr(time.monotonic()), flush=True)
fcntl.flock(fd, fcntl.LOCK_UN)
time.sleep(5)
"""


def _hold(path: str, seconds: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, path, str(seconds)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_waits_for_another_process_and_wakes_at_its_release(tmp_path: Path) -> None:
    lock = WriterLock(str(tmp_path / "db.sqlite"))
    holder = _hold(lock.path, 0.5)
    try:
        async def take() -> float:
            await lock.acquire()
            got = time.monotonic()
            lock.release()
            return got

        got = asyncio.run(take())
        assert holder.stdout is not None
        released = float(holder.stdout.readline())
        assert released <= got < released + 0.1, "woken at the release, not by polling"
    finally:
        holder.kill()
        holder.wait()
        lock.close()


def test_a_cancelled_wait_gives_the_lock_back(tmp_path: Path) -> None:
    lock = WriterLock(str(tmp_path / "db.sqlite"))
    holder = _hold(lock.path, 0.5)
    try:
        async def cancel_while_waiting() -> None:
            task = asyncio.create_task(lock.acquire())
            await asyncio.sleep(0.1)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await asyncio.sleep(1.0)  # the holder has let go; the waiting thread got and returned it

        asyncio.run(cancel_while_waiting())
        probe = os.open(lock.path, os.O_RDWR)
        try:
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises if anyone still holds it
        finally:
            os.close(probe)
    finally:
        holder.kill()
        holder.wait()
        lock.close()

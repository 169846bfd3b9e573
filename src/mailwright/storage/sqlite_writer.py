"""SQLite writes for group commit, on the event loop thread.

Why: through aiosqlite every statement is 3-4 hand-offs to the connection's thread and back
(cursor, execute, fetch, close). A delivery is ~10 statements, so ~40 thread wake-ups per
message; on a busy 2-core host each costs 0.2-1 ms of scheduling latency, far more than the
statements themselves (microseconds: WAL reads and page writes to the OS cache). Here a
group-commit batch's statements run inline on a raw sqlite3 connection (`SqliteWriter`, driven
by `storage.sqlrun.SqliteRun`), and only what can block goes to a thread: ``BEGIN IMMEDIATE``
when another process holds the write lock, and ``COMMIT`` (the fsync) unless it is a lone
delivery's on a disk that syncs fast (`SqliteWriter.INLINE_COMMIT_MAX`). SQLite reads on the hot
paths use `storage.prepared`'s inline reader (`storage.sqlrun.read_with`).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mailwright.storage.sqlite_lock import WriterLock


class SqliteWriter:
    """A raw sqlite3 connection for group-commit transactions, driven from the event loop.

    Statements run inline (microseconds each: page writes into the OS cache); only what can
    block leaves the loop: ``BEGIN IMMEDIATE`` when another process holds the write lock (tried
    inline first with no busy wait, the common case costs no thread hand-off), and ``COMMIT``,
    the WAL fsync. Callers hold the Database's process-wide SQLite write lock, so no other
    writer of this process competes meanwhile.
    """

    BUSY_WAIT_MS = 30000
    # A lone transaction (nothing else waiting to be filed) commits on the loop while COMMITs
    # take less than this on average: the thread hand-off cost ~0.3 ms of CPU per message, a
    # sixth of a 1 KiB delivery on one SMTP connection (1 KiB, C=1: 378-388 -> 426-447 msg/s).
    # Busier moments (a batch of several, or others queued) and a slow disk keep the thread,
    # so a stalled fsync blocks the loop at most once before the average moves past it. (A WAL
    # auto-checkpoint, every ~4 MB of WAL, rides on some COMMIT: a few ms on the loop then.)
    INLINE_COMMIT_MAX = 0.001

    def __init__(self, database_path: str, lock: WriterLock | None = None) -> None:
        self.path = database_path
        self.lock = lock  # the Database's cross-process writer lock (storage.sqlite_lock)
        self.conn: sqlite3.Connection | None = None
        self.commit_seconds = 2 * self.INLINE_COMMIT_MAX  # moving average of COMMIT times; starts in the thread

    async def _connection(self) -> sqlite3.Connection:
        if self.conn is None:
            def open_() -> sqlite3.Connection:
                conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
                for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON", "busy_timeout=0"):
                    conn.execute(f"PRAGMA {pragma}")
                return conn

            self.conn = await asyncio.to_thread(open_)
        return self.conn

    @asynccontextmanager
    async def transaction(self, *, lone: bool = False) -> AsyncIterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT (durable when this exits normally); ROLLBACK on error.
        `lone`: nothing else waits for this commit's outcome or for the loop meanwhile (see
        INLINE_COMMIT_MAX)."""
        conn = await self._connection()
        if self.lock is not None:
            await self.lock.acquire()
        try:
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError:  # locked by a writer outside Mailwright: wait off the loop
                await asyncio.to_thread(self._begin_waiting, conn)
            try:
                yield conn
                if lone and self.commit_seconds < self.INLINE_COMMIT_MAX:
                    took = self._commit(conn)
                else:
                    took = await asyncio.to_thread(self._commit, conn)
                self.commit_seconds = 0.8 * self.commit_seconds + 0.2 * took
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        finally:
            if self.lock is not None:
                self.lock.release()

    @staticmethod
    def _commit(conn: sqlite3.Connection) -> float:
        start = time.perf_counter()
        conn.execute("COMMIT")
        return time.perf_counter() - start

    def _begin_waiting(self, conn: sqlite3.Connection) -> None:
        conn.execute(f"PRAGMA busy_timeout={self.BUSY_WAIT_MS}")
        try:
            conn.execute("BEGIN IMMEDIATE")
        finally:
            conn.execute("PRAGMA busy_timeout=0")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

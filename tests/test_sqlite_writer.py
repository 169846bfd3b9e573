"""storage.sqlite_writer.SqliteWriter: where COMMIT runs. A lone transaction commits on the
event loop's thread once commits have been quick; a batch, or a disk that was slow, keeps the
commit in a worker thread; either way the rows are committed."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

from mailwright.storage.sqlite_writer import SqliteWriter


async def _commit_threads(writer: SqliteWriter, n: int, *, lone: bool) -> list[int]:
    """Run n one-row transactions; the thread each COMMIT ran on."""
    seen: list[int] = []
    for i in range(n):
        async with writer.transaction(lone=lone) as conn:
            conn.set_trace_callback(lambda sql: seen.append(threading.get_ident()) if sql == "COMMIT" else None)
            conn.execute("INSERT INTO t (v) VALUES (?)", (i,))
    return seen


def test_lone_commits_move_to_the_loop_and_back(tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    with sqlite3.connect(db) as c:
        c.execute("PRAGMA journal_mode=WAL")
        c.execute("CREATE TABLE t (v INTEGER)")

    async def go() -> None:
        loop_thread = threading.get_ident()
        writer = SqliteWriter(str(db))
        try:
            # A batch never commits on the loop, however quick the disk.
            assert loop_thread not in await _commit_threads(writer, 20, lone=False)
            writer.INLINE_COMMIT_MAX = 1.0  # every disk counts as quick here (CI's may be slow)
            writer.commit_seconds = 2.0  # nothing measured yet, as a fresh writer starts
            lone = await _commit_threads(writer, 40, lone=True)
            assert lone[0] != loop_thread  # no measurement yet: the thread
            assert lone[-1] == loop_thread, "quick commits move to the loop"
            writer.commit_seconds = 5.0  # as after a very slow fsync
            assert (await _commit_threads(writer, 1, lone=True))[0] != loop_thread
        finally:
            writer.close()

    asyncio.run(go())
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT count(*) FROM t").fetchone()[0] == 20 + 40 + 1

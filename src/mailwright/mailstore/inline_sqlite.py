"""A SQLite write engine for group commit whose statements run on the event loop thread.

Why: through aiosqlite every statement is 3-4 hand-offs to the connection's thread and back
(cursor, execute, fetch, close). A delivery is ~10 statements, so ~40 thread wake-ups per
message; on a busy 2-core host each costs 0.2-1 ms of scheduling latency, far more than the
statements themselves (microseconds: WAL reads and page writes to the OS cache). Here the
statements of a group-commit batch run inline, and only what can block goes to a thread:
``BEGIN IMMEDIATE`` (may wait for another process's write lock) and ``COMMIT`` (the fsync).

It quacks like an ``aiosqlite.Connection`` just enough for SQLAlchemy's aiosqlite dialect
(``create_async_engine(..., async_creator=...)``), so ORM code - ``messages.deliver`` - runs
on it unchanged. Only groupcommit.py uses it, under the Database's process-wide SQLite
write lock, so no other writer of this process competes for the file lock meanwhile.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool

if TYPE_CHECKING:
    from mailwright.services import Services


class _InlineCursor:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._cur = conn.cursor()

    async def __aenter__(self) -> _InlineCursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._cur.close()

    @property
    def description(self) -> Any:
        return self._cur.description

    @property
    def rowcount(self) -> int:
        return self._cur.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cur.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cur.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cur.arraysize = value

    async def execute(self, sql: str, parameters: Any = None) -> _InlineCursor:
        args = () if parameters is None else (parameters,)
        if sql.lstrip()[:5].upper() == "BEGIN":
            await asyncio.to_thread(self._cur.execute, sql, *args)  # may wait for another process
        else:
            self._cur.execute(sql, *args)
        return self

    async def executemany(self, sql: str, seq: Any) -> _InlineCursor:
        self._cur.executemany(sql, seq)
        return self

    async def fetchone(self) -> Any:
        return self._cur.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cur.fetchmany(size) if size is not None else self._cur.fetchmany()

    async def fetchall(self) -> list[Any]:
        return self._cur.fetchall()

    async def close(self) -> None:
        self._cur.close()

    async def nextset(self) -> None:
        return None

    async def setinputsizes(self, *sizes: Any) -> None:
        return None


class _ImmediateQueue:
    """aiosqlite's ``_tx`` job queue, which SQLAlchemy uses to set isolation_level: run now."""

    def put_nowait(self, item: tuple[asyncio.Future[Any], Callable[[], Any]]) -> None:
        future, fn = item
        try:
            future.set_result(fn())
        except Exception as exc:  # noqa: BLE001 - handed to the awaiting caller
            future.set_exception(exc)


class InlineConnection:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._connection = conn  # aiosqlite's "still open" marker, checked by SQLAlchemy
        self._tx = _ImmediateQueue()

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level

    def cursor(self) -> _InlineCursor:
        return _InlineCursor(self._conn)

    async def commit(self) -> None:
        await asyncio.to_thread(self._conn.commit)  # the fsync: off the loop

    async def rollback(self) -> None:
        self._conn.rollback()

    async def close(self) -> None:
        self._conn.close()
        self._connection = None  # type: ignore[assignment]

    def stop(self) -> None:
        self._conn.close()

    async def create_function(self, *args: Any, **kw: Any) -> None:
        self._conn.create_function(*args, **kw)


def inline_write_engine(database_path: str) -> AsyncEngine:
    """An engine on `database_path` for write transactions (BEGIN IMMEDIATE), one connection."""

    async def connect() -> InlineConnection:
        def open_() -> sqlite3.Connection:
            conn = sqlite3.connect(database_path, timeout=30, isolation_level=None, check_same_thread=False)
            for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON", "busy_timeout=30000"):
                conn.execute(f"PRAGMA {pragma}")
            return conn

        return InlineConnection(await asyncio.to_thread(open_))

    engine = create_async_engine(f"sqlite+aiosqlite:///{database_path}", async_creator=connect,
                                 poolclass=AsyncAdaptedQueuePool, pool_size=1, max_overflow=0)

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def inline_read_engine(database_path: str, pool_size: int = 4) -> AsyncEngine:
    """An engine for short reads (RCPT lookups): autocommit statements, run inline.

    WAL readers never wait for the writer, so a SELECT here costs microseconds and no thread
    hand-off. ``query_only`` makes a write through this engine an error, not a surprise.
    """

    async def connect() -> InlineConnection:
        def open_() -> sqlite3.Connection:
            conn = sqlite3.connect(database_path, timeout=30, isolation_level=None, check_same_thread=False)
            for pragma in ("foreign_keys=ON", "busy_timeout=30000", "query_only=ON"):
                conn.execute(f"PRAGMA {pragma}")
            return conn

        return InlineConnection(await asyncio.to_thread(open_))

    return create_async_engine(f"sqlite+aiosqlite:///{database_path}", async_creator=connect,
                               poolclass=AsyncAdaptedQueuePool, pool_size=pool_size, max_overflow=pool_size)


@asynccontextmanager
async def fast_read(svc: Services) -> AsyncIterator[AsyncSession]:
    """A read session: inline on SQLite (see inline_read_engine), ``svc.db.read()`` otherwise."""
    db = svc.db
    if not db.is_sqlite:
        async with db.read() as session:
            yield session
        return
    maker: async_sessionmaker[AsyncSession] | None = getattr(svc, "_mw_inline_reader", None)
    if maker is None:
        path = make_url(db.url).database
        if not path or path == ":memory:":
            async with db.read() as session:
                yield session
            return
        maker = async_sessionmaker(inline_read_engine(path), expire_on_commit=False)
        setattr(svc, "_mw_inline_reader", maker)  # noqa: B010 - per-Services runtime state
    async with maker() as session:
        yield session

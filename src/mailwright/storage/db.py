"""The database handle: one async engine, read/write sessions, migrations on start.

SQLite is the embedded default (WAL, synchronous=FULL so a 250 survives power loss, foreign
keys on). SQLite allows one writer at a time; writers in this process queue on an asyncio lock,
then on an flock shared with the other processes (storage.sqlite_lock: woken at once, where
SQLite's busy handler sleeps 1-100 ms between tries), and open their transaction with BEGIN
IMMEDIATE, so a transaction never fails half-way on a lock upgrade.
PostgreSQL needs neither: row locks (UPDATE ... RETURNING on the mailbox row) serialise UID
allocation across processes and nodes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from mailwright.storage.sqlite_lock import WriterLock

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_PG_MIGRATION_LOCK = 0x6D77_0001  # pg_advisory_lock key: one node migrates at a time


class DatabaseError(Exception):
    """A configuration or connection problem worth a one-line message, not a traceback."""


class Database:
    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        try:
            parsed = make_url(url)
        except Exception as exc:  # noqa: BLE001 - any parse failure is a bad setting
            raise DatabaseError(f"invalid database URL {url!r}: {exc}") from None
        self.url = url
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        if parsed.get_backend_name() not in ("sqlite", "postgresql"):
            raise DatabaseError(f"unsupported database {parsed.get_backend_name()!r} (use sqlite or postgresql)")
        kwargs: dict[str, Any] = {}
        if self.is_sqlite:
            db_path = parsed.database
            if db_path and db_path != ":memory:":
                Path(db_path).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": 30}
        else:
            # No pool_pre_ping: it is one more round trip on every checkout (every RCPT, every
            # IMAP read). A connection broken by a database restart fails its first statement
            # instead, SQLAlchemy then invalidates the pool, and that one request answers a
            # temporary error (SMTP 451, IMAP NO, HTTP 503) that clients retry.
            kwargs.update(pool_size=pool_size, max_overflow=pool_size * 2, pool_recycle=3600)
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        if self.is_sqlite:
            _install_sqlite_hooks(self.engine)
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)
        self._write_lock = asyncio.Lock() if self.is_sqlite else None
        db_path = parsed.database if self.is_sqlite else None
        # across processes (see storage.sqlite_lock); an in-memory database has no other process
        self.writer_lock = WriterLock(db_path) if db_path and db_path != ":memory:" else None

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A write transaction, committed on normal exit and rolled back on an exception."""
        if self._write_lock is not None:
            async with self._write_lock, self._process_writer(), self.sessionmaker() as session:
                await session.connection(execution_options={"mw_immediate": True})
                try:
                    yield session
                    await session.commit()
                except BaseException:
                    await session.rollback()
                    raise
        else:
            async with self.sessionmaker() as session, session.begin():
                yield session

    def _process_writer(self) -> AbstractAsyncContextManager[None]:
        return self.writer_lock.held() if self.writer_lock is not None else nullcontext()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        async with self.sessionmaker() as session:
            yield session

    async def migrate(self) -> None:
        """Bring the schema to the newest revision (Alembic), safely from several nodes at once."""
        async with self.engine.connect() as conn:
            if not self.is_sqlite:
                await conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
            try:
                await conn.run_sync(_run_alembic_upgrade)
                await conn.commit()
            finally:
                if not self.is_sqlite:
                    await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_MIGRATION_LOCK})
                    await conn.commit()

    async def check(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def close(self) -> None:
        await self.engine.dispose()
        if self.writer_lock is not None:
            self.writer_lock.close()


def _run_alembic_upgrade(connection: Connection) -> None:
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, "head")


def _install_sqlite_hooks(engine: AsyncEngine) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite's implicit BEGIN is deferred).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("mw_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

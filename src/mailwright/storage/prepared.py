"""Read statements built once and run without the ORM: what the IMAP hot paths use.

Why: an ORM ``AsyncSession.execute`` costs 150-300 µs of Python before the database sees the
query (session and transaction objects, cache-key generation, a greenlet hop, result wrapping,
the session's close), while a SELECT of a few indexed rows costs ~10 µs on SQLite. A one-message
FETCH made two of them (the mailbox counters, then the row), which was most of its latency.

Here a statement is a Core ``Select`` built once at import and compiled once per dialect:

* **SQLite**: it runs on one raw ``sqlite3`` connection per process, on the event-loop thread.
  WAL readers never wait for the writer, and in autocommit mode each statement sees the latest
  commit, so a read costs microseconds and needs no thread hand-off (the same reasoning as
  ``storage.sqlite_writer``). SQLAlchemy's own bind and result processors are
  applied, so rows hold the same values the ORM would have returned (aware datetimes, WireText
  unescaped). ``query_only`` makes a write through this connection an error.
* **PostgreSQL**: on an AUTOCOMMIT connection (no ORM, no BEGIN/ROLLBACK round trips): a
  statement whose columns need no result processing runs on asyncpg directly (compiled once by
  SQLAlchemy's dialect), one with WireText/datetime columns through Core (its compiled row
  processing beats a Python loop on big results). ``pinned`` lets the reads of one command share
  one pooled connection (one checkout and pre-ping instead of one per read), released before the
  command writes to the client.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.dml import UpdateBase

from mailwright.storage.texttypes import WireText

if TYPE_CHECKING:
    from mailwright.services import Services

Processor = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class _Compiled:
    """A statement compiled for one dialect, to run on the driver directly (raw sqlite3, or
    asyncpg for PostgreSQL reads)."""

    sql: str
    names: tuple[str, ...]  # parameter order (qmark / numeric_dollar style)
    defaults: dict[str, Any]  # values bound in the statement itself
    binds: dict[str, Processor]  # parameter name -> SQLAlchemy bind processor
    results: list[tuple[int, Processor]]  # column index -> SQLAlchemy result processor
    plain: list[tuple[int, Processor]]  # the same without WireText columns (see Reader.all_now)


class Prepared:
    """One statement; its SQLite (or PostgreSQL) form is compiled on first use.

    A SELECT needs nothing more. An INSERT/UPDATE (the delivery path's, see storage.sqlrun) is
    compiled for exactly the parameter `keys` given, which must name every column it writes:
    a column's Python-side default would be computed by the execution context this skips."""

    __slots__ = ("stmt", "keys", "_sqlite", "_pg")

    def __init__(self, stmt: Select[Any] | UpdateBase, keys: Sequence[str] = ()) -> None:
        self.stmt = stmt
        self.keys = tuple(keys)
        self._sqlite: _Compiled | None = None
        self._pg: _Compiled | None = None

    def for_sqlite(self, dialect: Dialect) -> _Compiled:
        form = self._sqlite
        if form is None:
            form = self._sqlite = self._compile(dialect)
        return form

    def for_postgres(self, dialect: Dialect) -> _Compiled:
        form = self._pg
        if form is None:
            form = self._pg = self._compile(dialect)
        return form

    def _compile(self, dialect: Dialect) -> _Compiled:
        c = self.stmt.compile(dialect=dialect, column_keys=list(self.keys) or None)
        binds: dict[str, Processor] = {}
        for name, bp in c.binds.items():
            bproc = bp.type._cached_bind_processor(dialect)
            if bproc is not None:
                binds[name] = bproc
        results: list[tuple[int, Processor]] = []
        plain: list[tuple[int, Processor]] = []
        for i, col in enumerate(getattr(self.stmt, "selected_columns", ())):
            rproc = col.type._cached_result_processor(dialect, None)
            if rproc is not None:
                results.append((i, rproc))
                if not isinstance(col.type, WireText):
                    plain.append((i, rproc))
        names = tuple(c.positiontup or ())
        defaults = {k: v for k, v in c.params.items() if v is not None}
        if self.keys:
            missing = [n for n in names if n not in self.keys and n not in defaults]
            if missing:
                raise ValueError(f"{type(self.stmt).__name__} needs values for {missing}")
        return _Compiled(c.string, names, defaults, binds, results, plain)


def _args(form: _Compiled, params: Mapping[str, Any] | None) -> list[Any]:
    args = []
    for n in form.names:
        v = params[n] if params is not None and n in params else form.defaults.get(n)
        p = form.binds.get(n)
        args.append(p(v) if p is not None and v is not None else v)
    return args


def _process(rows: list[Any], procs: list[tuple[int, Processor]]) -> list[Any]:
    if not procs or not rows:
        return rows
    out = []
    for r in rows:
        lst = list(r)
        for i, p in procs:
            v = lst[i]
            if v is not None:
                lst[i] = p(v)
        out.append(tuple(lst))
    return out


class Reader:
    """Runs prepared statements: inline on a raw SQLite connection, or on one Core connection."""

    __slots__ = ("_sqlite", "_dialect", "_conn")

    def __init__(self, sqlite_conn: sqlite3.Connection | None, dialect: Dialect,
                 conn: AsyncConnection | None = None) -> None:
        self._sqlite = sqlite_conn
        self._dialect = dialect
        self._conn = conn

    async def all(self, q: Prepared, params: Mapping[str, Any] | None = None) -> list[Any]:
        """Every row, as plain tuples (SQLite) or Row objects (PostgreSQL); both index by position."""
        if self._sqlite is not None:
            return self.all_now(q, params)
        assert self._conn is not None
        form = q.for_postgres(self._dialect)
        if form.results:  # typed columns (WireText, datetimes): SQLAlchemy's compiled row processing
            return list((await self._conn.execute(q.stmt, dict(params or {}))).all())
        # plain columns: asyncpg directly with the statement SQLAlchemy compiled once (its
        # per-execute work cost more than the small queries of a FETCH themselves)
        raw = await self._conn.get_raw_connection()
        return list(await raw.driver_connection.fetch(form.sql, *_args(form, params)))  # type: ignore[union-attr]

    def all_now(self, q: Prepared, params: Mapping[str, Any] | None = None, *, wire_escaped: bool = False
                ) -> list[Any]:
        """SQLite only: the rows without yielding to the event loop.

        With wire_escaped, WireText columns come as stored (storage.texttypes escapes kept): a
        caller that encodes them anyway undoes the rare escape itself, and the rows need no
        per-row rebuild (the full sync's case)."""
        assert self._sqlite is not None
        form = q.for_sqlite(self._dialect)
        cur = self._sqlite.execute(form.sql, _args(form, params))
        try:
            rows = cur.fetchall()
        finally:
            cur.close()
        return _process(rows, form.plain if wire_escaped else form.results)

    async def first(self, q: Prepared, params: Mapping[str, Any] | None = None) -> Any | None:
        rows = await self.all(q, params)
        return rows[0] if rows else None

    @property
    def inline(self) -> bool:
        return self._sqlite is not None


_ATTR = "_mw_prepared_reader"


def _sqlite_reader(svc: Services) -> Reader | None:
    """The process's inline SQLite reader, made on first use; None for an in-memory database."""
    r: Reader | None = getattr(svc, _ATTR, None)
    if r is not None:
        return r
    path = make_url(svc.db.url).database
    if not path or path == ":memory:":
        return None
    conn = sqlite3.connect(path, timeout=5, isolation_level=None, check_same_thread=False)
    for pragma in ("query_only=ON", "busy_timeout=5000"):
        conn.execute(f"PRAGMA {pragma}")
    r = Reader(conn, svc.db.engine.dialect)
    setattr(svc, _ATTR, r)
    return r


def autocommit_engine(svc: Services) -> AsyncEngine:
    """The Database's engine in AUTOCOMMIT (one per Services): reads without BEGIN/ROLLBACK."""
    eng: AsyncEngine | None = getattr(svc, "_mw_prepared_engine", None)
    if eng is None:
        eng = svc.db.engine.execution_options(isolation_level="AUTOCOMMIT")
        setattr(svc, "_mw_prepared_engine", eng)  # noqa: B010 - per-Services runtime state
    return eng


def inline_reader(svc: Services) -> Reader | None:
    """The SQLite reader when there is one (statements run without awaiting), else None."""
    return _sqlite_reader(svc) if svc.db.is_sqlite else None


# A connection pinned by `pinned` for the reads of one command: (owning task, reader).
_PINNED: ContextVar[tuple[asyncio.Task[Any] | None, Reader] | None] = ContextVar("mw_prepared_pinned", default=None)


def _pinned_reader() -> Reader | None:
    got = _PINNED.get()
    if got is not None and got[0] is asyncio.current_task():  # tasks spawned meanwhile copy the
        return got[1]  # context; the connection must never be used by two tasks at once
    return None


@asynccontextmanager
async def pinned(svc: Services) -> AsyncIterator[Callable[[], Awaitable[None]]]:
    """On PostgreSQL, the reads of this task share one connection until `release()` (or the end
    of the block): one pool checkout (and pre-ping) per command instead of one per read. The
    caller releases it before writing to the client, so a slow reader never holds a database
    connection. Nothing on SQLite."""
    if inline_reader(svc) is not None or _pinned_reader() is not None:
        async def noop() -> None:
            return None
        yield noop
        return
    cm = autocommit_engine(svc).connect()
    conn = await cm.__aenter__()
    token = _PINNED.set((asyncio.current_task(), Reader(None, svc.db.engine.dialect, conn)))
    released = False

    async def release() -> None:
        nonlocal released
        if not released:
            released = True
            _PINNED.reset(token)
            await cm.__aexit__(None, None, None)

    try:
        yield release
    finally:
        await release()


@asynccontextmanager
async def reader(svc: Services) -> AsyncIterator[Reader]:
    """A reader for one command's statements (one connection on PostgreSQL)."""
    if svc.db.is_sqlite:
        r = _sqlite_reader(svc)
        if r is not None:
            yield r
            return
    p = _pinned_reader()
    if p is not None:
        yield p
        return
    async with autocommit_engine(svc).connect() as conn:
        yield Reader(None, svc.db.engine.dialect, conn)


async def fetch_all(svc: Services, q: Prepared, params: Mapping[str, Any] | None = None) -> list[Any]:
    """One statement's rows (see `reader` to run several on one connection)."""
    r = inline_reader(svc)
    if r is not None:
        return r.all_now(q, params)
    async with reader(svc) as rd:
        return await rd.all(q, params)


async def fetch_first(svc: Services, q: Prepared, params: Mapping[str, Any] | None = None) -> Any | None:
    rows = await fetch_all(svc, q, params)
    return rows[0] if rows else None


"""Running the delivery path's prebuilt Core statements: raw sqlite3, or a Core connection.

Why: after the ORM was gone from delivery, SQLAlchemy Core's per-statement machinery
(execution context, cache lookup, result wrapping: ~60-90 µs) was still a fifth of a message's
CPU, for statements SQLite runs in 5-20 µs. On SQLite the statements therefore run on a raw
``sqlite3`` connection, compiled once per statement by SQLAlchemy with SQLAlchemy's own bind
processors applied (the `prepared` module's forms), so the values written are exactly those the
ORM would write. On PostgreSQL they run through Core on the transaction's connection.

Both runners offer the same two calls, so `messages.file_message` and `routing.resolve_sync`
are written once:

* ``all_now(q, params)`` - run one `Prepared` statement, return its rows (``[]`` for a write
  without RETURNING), without yielding to the event loop;
* ``savepoint()`` - a context manager: everything inside is undone if it raises.

Write statements are `Prepared` with `keys`: compiled for exactly those parameters, which must
name every column the statement writes (no Python-side column defaults are applied here).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect

from mailwright.storage.prepared import Prepared, Reader, autocommit_engine, inline_reader

if TYPE_CHECKING:
    from mailwright.services import Services

T = TypeVar("T")


class Reads(Protocol):
    """What lookups need (a prepared.Reader on SQLite is one too)."""

    def all_now(self, q: Prepared, params: Mapping[str, Any] | None = None) -> list[Any]: ...


class Runner(Reads, Protocol):
    def savepoint(self) -> Any: ...


class SqliteRun(Reader):
    """Statements inline on one raw sqlite3 connection (the caller owns the transaction)."""

    __slots__ = ("_depth",)

    def __init__(self, conn: sqlite3.Connection, dialect: Dialect) -> None:
        super().__init__(conn, dialect)
        self._depth = 0

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        conn = self._sqlite
        assert conn is not None
        self._depth += 1
        name = f"mw_sp{self._depth}"
        conn.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            conn.execute(f"ROLLBACK TO {name}")
            conn.execute(f"RELEASE {name}")
            raise
        else:
            conn.execute(f"RELEASE {name}")
        finally:
            self._depth -= 1


class CoreRun:
    """Statements through SQLAlchemy Core on a synchronous Connection (inside ``run_sync``)."""

    __slots__ = ("conn",)

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def all_now(self, q: Prepared, params: Mapping[str, Any] | None = None) -> list[Any]:
        result = self.conn.execute(q.stmt, dict(params or {}))
        return list(result.all()) if result.returns_rows else []

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        with self.conn.begin_nested():
            yield


async def read_with(svc: Services, fn: Callable[..., T], *args: Any) -> T:
    """``fn(reads, *args)`` for a synchronous function of lookups: inline on SQLite's query-only
    reader (microseconds per statement, nothing awaited), else in one ``run_sync`` on an
    autocommit Core connection (no BEGIN/ROLLBACK round trips). Callers never pick a dialect."""
    inline = inline_reader(svc)
    if inline is not None:
        return fn(inline, *args)
    async with autocommit_engine(svc).connect() as conn:
        return await conn.run_sync(lambda c: fn(CoreRun(c), *args))

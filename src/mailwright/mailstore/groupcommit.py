"""Group commit: concurrent deliveries share one transaction (and one fsync of the database).

DESIGN.md "Group commit": deliveries that arrive together share one transaction; each SMTP
client still gets its 250 only after the commit that holds its message. On SQLite every
commit is an fsync of the WAL and writers queue on one lock, so one transaction per message
caps delivery at 1/fsync-time; with a batch per commit the cap is per batch.

How: a caller parses its message and writes its blob (fsynced, in a worker thread, at the
same time as every other caller) *before* joining the queue - so no file fsync happens while
the database write lock is held. The first caller to find no batch running starts one; the
batch takes everything queued so far (up to ``MAX_BATCH``), runs ``messages.deliver`` for each
job inside one write transaction - each job in its own SAVEPOINT, so a failing job is rolled
back alone and only its caller sees the exception - commits, then publishes the jobs' events
and wakes their callers. Jobs that arrive meanwhile form the next batch. A lone delivery
waits for nobody (no timer), so latency at low load is unchanged.

``messages.deliver`` itself is reused unchanged: it is handed a view of the Services whose
``db.write()`` yields the batch's session and whose event bus holds events back until the
batch is committed. If the commit itself fails, every job of the batch is retried in its own
transaction (plain ``messages.deliver``), so a bad batch-mate cannot fail a good message.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from mailwright.events.bus import Event
from mailwright.mailstore import messages
from mailwright.mailstore.inline_sqlite import inline_write_engine
from mailwright.mailstore.messages import Stored, Target
from mailwright.mailstore.mime import ParsedMessage, parse_message
from mailwright.services import Services

log = logging.getLogger(__name__)

MAX_BATCH = 32  # bounds how long one batch holds the write lock (~5 ms of ORM work per message)
_PARSE_IN_THREAD = 256 * 1024  # larger messages are parsed off the event loop


class _HeldEvents:
    """Stands in for the event bus inside a batch: events wait for the commit."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    async def publish(self, event: Event) -> None:
        self.events.append(event)


class _BatchDatabase:
    """Stands in for Database inside a batch: every write() is the batch's open transaction."""

    def __init__(self, session: AsyncSession, real: Any) -> None:
        self.session = session
        self.is_sqlite = real.is_sqlite

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        yield self.session

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        yield self.session


@dataclass
class _Job:
    raw: bytes
    targets: list[Target]
    mail_from: str | None
    internal_date: datetime | None
    parsed: ParsedMessage
    future: asyncio.Future[list[Stored]]
    events: _HeldEvents = field(default_factory=_HeldEvents)


class GroupCommitter:
    def __init__(self, svc: Services, max_batch: int = MAX_BATCH) -> None:
        self.svc = svc
        self.max_batch = max_batch
        self._pending: list[_Job] = []
        self._worker: asyncio.Task[None] | None = None
        self._engine: AsyncEngine | None = None
        self._sessionmaker: async_sessionmaker[AsyncSession] | None = None
        self.batches = 0  # statistics, for tests and the benchmark
        self.jobs = 0

    async def deliver(
        self,
        raw: bytes,
        targets: list[Target],
        *,
        mail_from: str | None = None,
        internal_date: datetime | None = None,
        parsed: ParsedMessage | None = None,
    ) -> list[Stored]:
        """Same contract as ``messages.deliver``: returns once the message is committed."""
        if not targets:
            return []
        if parsed is None:
            if len(raw) > _PARSE_IN_THREAD:
                parsed = await asyncio.to_thread(parse_message, raw)
            else:
                parsed = parse_message(raw)
        digest = await self.svc.blobs.put(raw)  # durable before any transaction can reference it
        fut: asyncio.Future[list[Stored]] = asyncio.get_running_loop().create_future()
        self._pending.append(_Job(raw, targets, mail_from, internal_date, parsed, fut))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._run(), name="groupcommit")
        stored = await fut
        await self.svc.blobs.ensure(digest, raw)
        return stored

    async def _run(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch:]
            try:
                outcomes = await self._commit(batch)
            except Exception:
                log.exception("group commit of %d deliveries failed; retrying them one by one", len(batch))
                await self._one_by_one(batch)
                continue
            self.batches += 1
            self.jobs += len(batch)
            for job, outcome in zip(batch, outcomes, strict=True):
                if isinstance(outcome, BaseException):
                    _settle(job.future, exc=outcome)
                    continue
                for ev in job.events.events:
                    try:
                        await self.svc.events.publish(ev)
                    except Exception:  # the message is stored; a lost notification is not fatal
                        log.exception("publishing %s failed", ev.type)
                _settle(job.future, result=outcome)

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncSession]:
        """The batch transaction: on SQLite through the inline engine (see inline_sqlite.py)."""
        db = self.svc.db
        if not db.is_sqlite:
            async with db.write() as session:
                yield session
            return
        if self._sessionmaker is None:
            path = make_url(db.url).database
            assert path, "group commit needs a SQLite file database"
            self._engine = inline_write_engine(path)
            self._sessionmaker = async_sessionmaker(self._engine, expire_on_commit=False)
        lock = getattr(db, "_write_lock", None) or asyncio.Lock()
        async with lock, self._sessionmaker() as session:
            await session.connection()  # BEGIN IMMEDIATE
            try:
                yield session
                await session.commit()
            except BaseException:
                await session.rollback()
                raise

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None
            self._sessionmaker = None

    async def _commit(self, batch: list[_Job]) -> list[list[Stored] | BaseException]:
        outcomes: list[list[Stored] | BaseException] = []
        async with self._write() as session:
            shared = _BatchDatabase(session, self.svc.db)
            for job in batch:
                view = dataclasses.replace(self.svc, db=shared, events=job.events)  # type: ignore[arg-type]
                try:
                    async with session.begin_nested():
                        stored = await messages.deliver(view, job.raw, job.targets, mail_from=job.mail_from,
                                                        internal_date=job.internal_date, parsed=job.parsed)
                    outcomes.append(stored)
                except Exception as exc:
                    job.events.events.clear()
                    outcomes.append(exc)
        return outcomes

    async def _one_by_one(self, batch: list[_Job]) -> None:
        for job in batch:
            try:
                stored = await messages.deliver(self.svc, job.raw, job.targets, mail_from=job.mail_from,
                                                internal_date=job.internal_date, parsed=job.parsed)
            except Exception as exc:
                _settle(job.future, exc=exc)
            else:
                _settle(job.future, result=stored)


def _settle(fut: asyncio.Future[list[Stored]], *, result: list[Stored] | None = None,
            exc: BaseException | None = None) -> None:
    if fut.done():  # the caller went away (connection lost); the message is stored regardless
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result or [])


def committer_for(svc: Services) -> GroupCommitter:
    """The process-wide committer of these Services (created on first use)."""
    gc: GroupCommitter | None = getattr(svc, "_mw_group_commit", None)
    if gc is None:
        gc = GroupCommitter(svc)
        setattr(svc, "_mw_group_commit", gc)  # noqa: B010 - per-Services runtime state
    return gc


async def deliver(
    svc: Services,
    raw: bytes,
    targets: list[Target],
    *,
    mail_from: str | None = None,
    internal_date: datetime | None = None,
    parsed: ParsedMessage | None = None,
) -> list[Stored]:
    """``messages.deliver`` through the group committer of `svc`."""
    return await committer_for(svc).deliver(raw, targets, mail_from=mail_from, internal_date=internal_date,
                                            parsed=parsed)

"""Group commit: concurrent deliveries share one transaction (and one fsync of the database).

DESIGN.md "Group commit": deliveries that arrive together share one transaction; each SMTP
client still gets its 250 only after the commit that holds its message. On SQLite every
commit is an fsync of the WAL and writers queue on one lock, so one transaction per message
caps delivery at 1/fsync-time; with a batch per commit the cap is per batch.

How: a caller parses its message, writes its blob and joins the queue. A message of up to
``blob_journal_max`` bytes gets no file yet: its bytes join the batch as a ``blob_journal``
row (storage.blobjournal), so the COMMIT alone makes it durable, and the journal's flusher
writes the file later, off the delivery path (readers find the row meanwhile). A larger one
is fsynced in a worker thread while the batch writes its rows, and the batch waits for it just
before COMMIT; either way a committed row never references a blob that could be lost. The first caller to
find no batch running starts one; the batch takes everything queued so far (up to ``MAX_BATCH``), files each job with
``messages.file_message`` (the statements ``messages.deliver`` uses) inside one write
transaction, commits, then publishes the jobs' events and wakes their callers. On SQLite the
statements run inline on a raw connection (``storage/sqlite_writer.py` `SqliteWriter``, only BEGIN-when-
locked and COMMIT leave the loop); on PostgreSQL in one ``run_sync`` call on a Core connection.
Jobs that arrive meanwhile form the next batch. A lone delivery waits for nobody (no timer), so
latency at low load is unchanged.

Failures: the batch is first filed optimistically with no savepoints. If anything fails, the
transaction is rolled back and the batch filed again with each job in its own SAVEPOINT, so
the failing job is rolled back alone and only its caller sees the exception. If even that
commit fails, every job is retried in its own transaction (plain ``messages.deliver``), so a
bad batch-mate cannot fail a good message.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.engine import make_url

from mailwright.mailstore import messages
from mailwright.mailstore.messages import Stored, Target
from mailwright.mailstore.mime import ParsedMessage, parse_message
from mailwright.services import Services
from mailwright.storage import blobjournal
from mailwright.storage.blobs import BlobStore
from mailwright.storage.models import utcnow
from mailwright.storage.sqlite_writer import SqliteWriter
from mailwright.storage.sqlrun import CoreRun, Runner, SqliteRun

log = logging.getLogger(__name__)

MAX_BATCH = 32  # bounds how long one batch holds the write lock (~0.5 ms of SQL per message)
_PARSE_IN_THREAD = 256 * 1024  # larger messages are parsed off the event loop


@dataclass
class _Job:
    raw: bytes
    targets: list[Target]
    mail_from: str | None
    internal_date: datetime | None
    parsed: ParsedMessage
    future: asyncio.Future[list[Stored]]
    blob: asyncio.Future[str]  # BlobStore.put of raw: must be done before the batch commits
    digest: str = ""
    when: datetime = field(default_factory=utcnow)
    journal: bool = False  # bytes go into blob_journal with the rows (storage.blobjournal)


class GroupCommitter:
    def __init__(self, svc: Services, max_batch: int = MAX_BATCH) -> None:
        self.svc = svc
        self.max_batch = max_batch
        self._pending: list[_Job] = []
        self._worker: asyncio.Task[None] | None = None
        self._writer: SqliteWriter | None = None
        self.owner = blobjournal.owner_of(svc.blobs)
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
        crlf: bool = False,
    ) -> list[Stored]:
        """Same contract as ``messages.deliver``: returns once the message is committed.
        `crlf`: every LF of `raw` follows a CR (see mime.parse_message)."""
        if not targets:
            return []
        digest = BlobStore.digest(raw)
        loop = asyncio.get_running_loop()
        journal = blobjournal.journaled(self.svc, len(raw))
        if journal:  # no file yet: the batch's commit makes it durable (its journal row)
            blob: asyncio.Future[str] = loop.create_future()
            blob.set_result(digest)
        else:
            # Written and fsynced in a thread while this message is parsed and the batch's rows
            # are written (started before the parse: at 100 KiB the file's two fsyncs take
            # ~1.3 ms, the parse ~0.5); the batch awaits it before COMMIT, so no row can
            # reference a blob that is not durable.
            blob = self.svc.blobs.put_started(raw, digest)
        if parsed is None:  # (a caller cancelled meanwhile leaves an unreferenced file for the blob GC)
            if len(raw) > _PARSE_IN_THREAD:
                parsed = await asyncio.to_thread(functools.partial(parse_message, raw, crlf=crlf))
            else:
                parsed = parse_message(raw, crlf=crlf)
        fut: asyncio.Future[list[Stored]] = loop.create_future()
        self._pending.append(_Job(raw, targets, mail_from, internal_date, parsed, fut, blob, digest,
                                  internal_date or utcnow(), journal))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._run(), name="groupcommit")
        stored = await fut
        if not journal:  # (a journaled blob's file is the flusher's to write, see ensure)
            await self.svc.blobs.ensure(digest, raw)
        return stored

    async def _run(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch:]
            try:
                outcomes = await self._commit(batch, isolated=False)
            except Exception as exc:
                if len(batch) == 1:  # it ran alone: nothing to retry apart, its caller gets the error
                    _settle(batch[0].future, exc=exc)
                    continue
                try:  # again, each job in a savepoint: only the failing one fails
                    outcomes = await self._commit(batch, isolated=True)
                except Exception:
                    log.exception("group commit of %d deliveries failed; retrying them one by one", len(batch))
                    await self._one_by_one(batch)
                    continue
            self.batches += 1
            self.jobs += len(batch)
            # Callers first (their 250 waits for nothing more), then the change events: with
            # PostgreSQL each publish is a NOTIFY round trip.
            for job, outcome in zip(batch, outcomes, strict=True):
                if isinstance(outcome, BaseException):
                    _settle(job.future, exc=outcome)
                else:
                    _settle(job.future, result=outcome)
            events = [ev for outcome in outcomes if not isinstance(outcome, BaseException)
                      for ev in messages.added_events(outcome)]
            try:
                await self.svc.events.publish_many(events)
            except Exception:  # the messages are stored; a lost notification is not fatal
                log.exception("publishing %d events failed", len(events))

    async def _commit(self, batch: list[_Job], *, isolated: bool) -> list[list[Stored] | BaseException]:
        """The batch's transaction: on SQLite a raw connection of our own (see
        storage.sqlite_writer.SqliteWriter) under the process's writer lock, the statements inline; on
        PostgreSQL a Core connection from the main pool, the statements in one ``run_sync``."""
        db = self.svc.db
        if not db.is_sqlite:
            async with db.engine.begin() as conn:
                outcomes = await conn.run_sync(
                    lambda c: _file_batch(CoreRun(c), c.dialect.name, batch, isolated, self.owner))
                await _blobs_durable(batch)
                return outcomes
        if self._writer is None:
            path = make_url(db.url).database
            assert path, "group commit needs a SQLite file database"
            self._writer = SqliteWriter(path, db.writer_lock)
        lock = getattr(db, "_write_lock", None) or asyncio.Lock()
        lone = len(batch) == 1 and not self._pending  # one connection's delivery: see SqliteWriter
        async with lock, self._writer.transaction(lone=lone) as raw:
            outcomes = _file_batch(SqliteRun(raw, db.engine.dialect), "sqlite", batch, isolated, self.owner)
            await _blobs_durable(batch)
            return outcomes

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    async def _one_by_one(self, batch: list[_Job]) -> None:
        for job in batch:
            try:
                stored = await messages.deliver(self.svc, job.raw, job.targets, mail_from=job.mail_from,
                                                internal_date=job.internal_date, parsed=job.parsed)
            except Exception as exc:
                _settle(job.future, exc=exc)
            else:
                _settle(job.future, result=stored)


async def _blobs_durable(batch: list[_Job]) -> None:
    """Wait for the batch's blob files (written in threads meanwhile); a failed write fails
    the batch before its COMMIT. Futures already done (journaled blobs, fast writes) are
    checked in place: a gather costs a loop iteration even then (~80 us on one connection)."""
    waiting = [job.blob for job in batch if not job.blob.done()]
    if waiting:
        await asyncio.gather(*waiting)
    for job in batch:
        job.blob.result()  # raises a failed write's error


def _file_batch(run: Runner, dialect: str, batch: list[_Job], isolated: bool,
                owner: str) -> list[list[Stored] | BaseException]:
    """File every job of the batch. Optimistically all in the one transaction (any failure
    fails the batch, which the caller then retries `isolated`); isolated, each job in its own
    SAVEPOINT, so a failing job is rolled back alone. Failures are rare (an account deleted
    between RCPT and DATA), and two statements less per message is ~5% of its CPU."""
    if not isolated:
        return [_file_job(run, dialect, job, owner) for job in batch]
    outcomes: list[list[Stored] | BaseException] = []
    for job in batch:
        try:
            with run.savepoint():
                outcomes.append(_file_job(run, dialect, job, owner))
        except Exception as exc:  # noqa: BLE001 - handed to that job's caller
            outcomes.append(exc)
    return outcomes


def _file_job(run: Runner, dialect: str, job: _Job, owner: str) -> list[Stored]:
    stored = messages.file_message(run, dialect, job.raw, job.digest, job.targets, job.parsed, job.when,
                                   job.mail_from)
    if job.journal:
        run.all_now(blobjournal.INSERT, {"owner": owner, "digest": job.digest, "data": job.raw,
                                         "created_at": utcnow()})
    return stored


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
    crlf: bool = False,
) -> list[Stored]:
    """``messages.deliver`` through the group committer of `svc`."""
    return await committer_for(svc).deliver(raw, targets, mail_from=mail_from, internal_date=internal_date,
                                            parsed=parsed, crlf=crlf)

"""Blob journal: a small message is made durable by its database commit, not by fsyncs of its own.

Why: a blob file made durable on its own costs two file-system journal commits (the new file's
fsync, then its directory's after the rename) before the database commit can even start, and
on one SMTP connection those are most of a delivery's latency. A message up to
``Settings.blob_journal_max`` bytes is instead inserted into ``blob_journal`` in the same
transaction as the rows that reference it, so the one WAL fsync of the commit makes everything
durable (the same trick as Postfix's and Dovecot's: the fewest sync points on the acceptance
path). Its file is not written at delivery at all: creating, writing and renaming it (and,
early in a store's life, making its ``ab/`` directory) cost ~0.2 ms of the serial path of
one SMTP connection, a tenth of a 1 KiB delivery. Until the file exists, `lookup` serves the
bytes from the row (BlobStore.get falls back to it); a client that FETCHes a message the moment
IDLE announces it takes that path.

Afterwards, per process, every ``Settings.blob_journal_flush_seconds``, `flush` takes the journal
rows of this file system, writes the file of each blob still referenced (unsynced, skipped when
present; unlinked again if the blob's last message went meanwhile), ``syncfs(2)``s the blob
store's file system (one sync for all of them), then deletes exactly those rows. A row that is
gone has its file on disk.

After a crash the rows still there are the files that may be missing, lost or torn: ``recover``
rewrites each one (verified by its SHA-256, fsynced) before the node serves anything. Rows are
tagged with their ``owner`` (host and blob directory), since ``syncfs`` on one host says nothing
of another's page cache when nodes share a blob volume; rows older than ``STALE_AFTER`` (their
owner died) are restored by any node. A row whose blob has been deleted meanwhile (message
expunged) is dropped without writing the file. The table is indexed by digest only (the
lookups); the flusher's and the orphan sweep's scans of a table this small cost less than two
more index pages in every delivery's commit.

Larger messages keep the old path (fsynced file in a thread while the rows are written, then
commit): their bytes in the database cost more than the fsyncs they save -- written to the WAL,
again by the checkpoint, and read back once more to free their pages when the row is deleted.
Measured on SSD-backed storage (fsync ~0.1 ms; `bench/README.md`): the journal gives 1 KiB
messages +9% at one connection and +17-30% at 8-32; at 10 KiB it is even; at 100 KiB it costs
20% and the flush's syncfs + deletes put 150 ms stalls into p99. Hence the 16 KiB default.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from datetime import timedelta
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Table, delete, insert, select

from mailwright.storage.models import Blob, BlobJournal, utcnow
from mailwright.storage.prepared import Prepared

if TYPE_CHECKING:
    from mailwright.services import Services
    from mailwright.storage.blobs import BlobStore

log = logging.getLogger(__name__)

FLUSH_BATCH = 1000  # rows per round (their bytes are read: at most 16 MB at the default max)
# Rows deleted per transaction. Deleting a row reads its whole overflow chain (the message's
# bytes) to free the pages; one transaction for a second's worth of 100 KiB rows held the
# writer lock for ~150 ms, and every delivery of that moment waited (p99 175 ms at C=8).
DELETE_CHUNK = 32
STALE_AFTER = timedelta(minutes=2)  # an owner flushes within seconds; older rows are orphans
_STALE_EVERY = 30  # rounds between looks for other owners' orphans

_J = cast(Table, BlobJournal.__table__)
_B = cast(Table, Blob.__table__)
INSERT = Prepared(insert(_J), ("owner", "digest", "data", "created_at"))


def owner_of(blobs: BlobStore) -> str:
    """The file system a process writes blob files to: its host and blob directory."""
    return f"{socket.gethostname()}:{blobs.root.resolve()}"


def journaled(svc: Services, size: int) -> bool:
    """Whether a message of `size` bytes goes through the journal."""
    return 0 < size <= svc.settings.blob_journal_max


async def flush(svc: Services) -> int:
    """Write and sync this file system's journaled files and drop their rows; how many rows."""
    owner = owner_of(svc.blobs)
    async with svc.db.read() as s:
        rows: list[Any] = list((await s.execute(
            select(_J.c.id, _J.c.digest, _J.c.data, _live()).where(_J.c.owner == owner)
            .order_by(_J.c.id).limit(FLUSH_BATCH))).all())
    if not rows:
        return 0
    written = await asyncio.to_thread(_write_files, svc.blobs, [(r.digest, bytes(r.data)) for r in rows if r.live])
    if written:
        # A blob whose last message went between our read and our write had its file unlinked
        # (changes.remove_blob_files) before the file existed: ours would be an orphan. Seen
        # gone now, it is ours to unlink; gone later, its own unlink comes after our write.
        async with svc.db.read() as s:
            live = set((await s.execute(select(_B.c.hash).where(_B.c.hash.in_(written)))).scalars())
        for digest in written:
            if digest not in live:
                svc.blobs.delete(digest)
    await asyncio.to_thread(svc.blobs.sync_filesystem)
    ids = [r.id for r in rows]
    for i in range(0, len(ids), DELETE_CHUNK):  # short transactions: deliveries get the lock between
        async with svc.db.write() as s:
            await s.execute(delete(_J).where(_J.c.id.in_(ids[i:i + DELETE_CHUNK])))
    return len(ids)


def _write_files(blobs: BlobStore, files: list[tuple[str, bytes]]) -> list[str]:
    """Write the files that are missing (no fsync: the caller syncs them all at once)."""
    return [digest for digest, data in files if blobs.put_unsynced(digest, data)]


def _live() -> Any:
    """Whether a journal row's blob is still referenced (a blobs row exists)."""
    return select(_B.c.hash).where(_B.c.hash == _J.c.digest).scalar_subquery().label("live")


async def lookup(svc: Services, digest: str) -> bytes | None:
    """The bytes of a blob whose file the flusher has not written yet (BlobStore.fallback)."""
    async with svc.db.read() as s:
        data = (await s.execute(select(_J.c.data).where(_J.c.digest == digest).limit(1))).scalar()
    return bytes(data) if data is not None else None


async def recover(svc: Services, *, stale_only: bool = False) -> int:
    """Rewrite (verified, fsynced) the files of journal rows, then drop the rows: this file
    system's rows at start-up, anyone's stale ones later. How many files had to be rewritten."""
    if stale_only:
        where = _J.c.created_at < utcnow() - STALE_AFTER
    else:
        where = _J.c.owner == owner_of(svc.blobs)
    rewritten = 0
    while True:
        async with svc.db.read() as s:
            rows: list[Any] = list((await s.execute(
                select(_J.c.id, _J.c.digest, _J.c.data, _live()).where(where).order_by(_J.c.id).limit(500))).all())
        if not rows:
            return rewritten
        for row in rows:
            if row.live is not None and await asyncio.to_thread(svc.blobs.restore_sync, row.digest, bytes(row.data)):
                rewritten += 1
        async with svc.db.write() as s:
            await s.execute(delete(_J).where(_J.c.id.in_([r.id for r in rows])))


async def run_flusher(svc: Services) -> None:
    """The per-process loop: flush every interval (it bounds the journal to about that much
    mail), restore orphans now and then."""
    rounds = 0
    while True:
        await asyncio.sleep(svc.settings.blob_journal_flush_seconds)
        rounds += 1
        try:
            while await flush(svc) == FLUSH_BATCH:
                pass
            if rounds % _STALE_EVERY == 0 and (n := await recover(svc, stale_only=True)):
                log.warning("restored %d blob files from another node's journal rows", n)
        except asyncio.CancelledError:
            raise
        except Exception:  # the next round tries again; the rows keep the bytes meanwhile
            log.exception("blob journal flush failed")


CLOSE_WAIT = 5.0  # seconds a clean stop waits for its last flush


async def close(svc: Services) -> None:
    """On a clean stop: one last flush, so a restart has nothing to restore. Bounded: syncfs
    waits for every dirty page of the file system, not only ours; what is not flushed in
    time is restored by recover() at the next start."""
    async def drain() -> None:
        while await flush(svc) == FLUSH_BATCH:
            pass

    try:
        await asyncio.wait_for(drain(), CLOSE_WAIT)
    except TimeoutError:
        log.warning("blob journal not flushed within %.0f s; the next start restores it", CLOSE_WAIT)
    except Exception:  # noqa: BLE001 - recover() at the next start covers it
        log.exception("final blob journal flush failed")

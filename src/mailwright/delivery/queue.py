"""The durable outbound queue: enqueue, and the operator's view (list, show, retry now, delete).

`enqueue` writes the message blob (fsynced) and then, in one transaction, a `queue_messages`
row plus one `queue_recipients` row per envelope recipient; it returns only after the commit,
so a caller may answer 250/2xx as soon as it returns. The runner (`delivery.outbound`) picks
recipients up from there; an enqueue in this process wakes it at once, other processes' runners
find the rows on their next poll.

Scope: every query takes an optional `tenant_id`; None means "platform: all tenants".
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from mailwright.directory.errors import NotFound
from mailwright.mailstore.changes import remove_blob_files, unreferenced_blobs
from mailwright.services import Services
from mailwright.storage.models import Blob, QueuedMessage, QueuedRecipient, utcnow

__all__ = [
    "QueueEntry",
    "RecipientState",
    "delete_message",
    "enqueue",
    "flush",
    "get_message",
    "list_messages",
    "retry_now",
    "wakeup_event",
]


def wakeup_event(svc: Services) -> asyncio.Event:
    """The event this process's runner sleeps on; set by enqueue and retry-now."""
    ev: asyncio.Event | None = getattr(svc, "_mw_queue_wakeup", None)
    if ev is None:
        ev = asyncio.Event()
        setattr(svc, "_mw_queue_wakeup", ev)  # noqa: B010 - per-Services runtime state
    return ev


def _domain_of(rcpt: str) -> str:
    return rcpt.rpartition("@")[2].lower()


async def enqueue(
    svc: Services,
    raw: bytes,
    mail_from: str,
    rcpts: list[str],
    *,
    tenant_id: str | None,
    principal_id: str | None,
    kind: str = "submission",
) -> int:
    """Queue `raw` for delivery to `rcpts` (remote addresses); durable before it returns."""
    if not rcpts:
        raise ValueError("enqueue needs at least one recipient")
    digest = await svc.blobs.put(raw)
    now = utcnow()
    unique = list(dict.fromkeys(rcpts))
    async with svc.db.write() as s:
        if await s.get(Blob, digest) is None:
            s.add(Blob(hash=digest, size=len(raw)))
        msg = QueuedMessage(
            tenant_id=tenant_id, principal_id=principal_id, blob_hash=digest, size=len(raw),
            mail_from=mail_from or "", kind=kind, created_at=now,
            expires_at=now + timedelta(seconds=svc.settings.queue_lifetime_seconds),
        )
        s.add(msg)
        await s.flush()
        for rcpt in unique:
            s.add(QueuedRecipient(queue_id=msg.id, rcpt=rcpt, domain=_domain_of(rcpt), status="pending",
                                  attempts=0, next_attempt_at=now, updated_at=now))
        queue_id = int(msg.id)
    await svc.blobs.ensure(digest, raw)
    wakeup_event(svc).set()
    return queue_id


@dataclass
class RecipientState:
    rcpt: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    remote_mta: str | None

    def as_dict(self) -> dict[str, object]:
        return {
            "address": self.rcpt,
            "status": self.status,
            "attempts": self.attempts,
            "nextAttempt": self.next_attempt_at.isoformat() if self.next_attempt_at else None,
            "lastError": self.last_error,
            "remoteMta": self.remote_mta,
        }


@dataclass
class QueueEntry:
    id: int
    mail_from: str
    kind: str
    size: int
    tenant_id: str | None
    principal_id: str | None
    created_at: datetime
    expires_at: datetime
    recipients: list[RecipientState] = field(default_factory=list)
    delay_notice_at: datetime | None = None  # when the sender was told it is delayed (once)

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "from": self.mail_from,
            "kind": self.kind,
            "size": self.size,
            "tenantId": self.tenant_id,
            "created": self.created_at.isoformat(),
            "expires": self.expires_at.isoformat(),
            "delayNotice": self.delay_notice_at.isoformat() if self.delay_notice_at else None,
            "recipients": [r.as_dict() for r in self.recipients],
        }


def _entry(m: QueuedMessage, rows: list[QueuedRecipient]) -> QueueEntry:
    return QueueEntry(
        id=m.id, mail_from=m.mail_from, kind=m.kind, size=m.size, tenant_id=m.tenant_id,
        principal_id=m.principal_id, created_at=m.created_at, expires_at=m.expires_at,
        recipients=[RecipientState(r.rcpt, r.status, r.attempts,
                                   r.next_attempt_at if r.status == "pending" else None,
                                   r.last_error, r.remote_mta) for r in rows],
        delay_notice_at=m.delay_notice_at,
    )


async def list_messages(
    session: AsyncSession, tenant_id: str | None = None, *, limit: int = 100, offset: int = 0
) -> tuple[list[QueueEntry], int]:
    """Queued messages, oldest first, with their recipients; and the total count."""
    q = select(QueuedMessage)
    count_q = select(func.count()).select_from(QueuedMessage)
    if tenant_id is not None:
        q = q.where(QueuedMessage.tenant_id == tenant_id)
        count_q = count_q.where(QueuedMessage.tenant_id == tenant_id)
    msgs = list((await session.execute(q.order_by(QueuedMessage.id).limit(limit).offset(offset))).scalars())
    total = int((await session.execute(count_q)).scalar_one())
    if not msgs:
        return [], total
    rq = select(QueuedRecipient).where(QueuedRecipient.queue_id.in_([m.id for m in msgs])).order_by(
        QueuedRecipient.id)
    by_msg: dict[int, list[QueuedRecipient]] = {}
    for r in (await session.execute(rq)).scalars():
        by_msg.setdefault(r.queue_id, []).append(r)
    return [_entry(m, by_msg.get(m.id, [])) for m in msgs], total


async def _get(session: AsyncSession, queue_id: int, tenant_id: str | None) -> QueuedMessage:
    m = await session.get(QueuedMessage, queue_id)
    if m is None or (tenant_id is not None and m.tenant_id != tenant_id):
        raise NotFound(f"queued message {queue_id} not found", field="id", value=str(queue_id))
    return m


async def get_message(session: AsyncSession, queue_id: int, tenant_id: str | None = None) -> QueueEntry:
    m = await _get(session, queue_id, tenant_id)
    rows = list((await session.execute(
        select(QueuedRecipient).where(QueuedRecipient.queue_id == m.id).order_by(QueuedRecipient.id))).scalars())
    return _entry(m, rows)


async def retry_now(svc: Services, queue_id: int, tenant_id: str | None = None) -> QueueEntry:
    """Make every pending recipient due now (as `postqueue -i`); leased ones keep their lease."""
    async with svc.db.write() as s:
        m = await _get(s, queue_id, tenant_id)
        await s.execute(update(QueuedRecipient).where(
            QueuedRecipient.queue_id == m.id, QueuedRecipient.status == "pending"
        ).values(next_attempt_at=utcnow()))
    wakeup_event(svc).set()
    async with svc.db.read() as s:
        return await get_message(s, queue_id, tenant_id)


async def flush(svc: Services, tenant_id: str | None = None) -> int:
    """Make every pending recipient due now (as `postqueue -f`); returns how many."""
    async with svc.db.write() as s:
        q = update(QueuedRecipient).where(QueuedRecipient.status == "pending")
        if tenant_id is not None:
            mine = select(QueuedMessage.id).where(QueuedMessage.tenant_id == tenant_id)
            q = q.where(QueuedRecipient.queue_id.in_(mine))
        res = await s.execute(q.values(next_attempt_at=utcnow()))
        n: int = getattr(res, "rowcount", 0)
    wakeup_event(svc).set()
    return n


async def delete_message(svc: Services, queue_id: int, tenant_id: str | None = None) -> None:
    """Drop a queued message without a bounce (as `postsuper -d`)."""
    async with svc.db.write() as s:
        m = await _get(s, queue_id, tenant_id)
        freed = await drop(s, m.id, m.blob_hash)
    remove_blob_files(svc, freed)


async def drop(s: AsyncSession, queue_id: int, blob_hash: str) -> list[str]:
    """Delete a message row and its recipients; returns blob hashes to remove after the commit."""
    return await drop_many(s, [(queue_id, blob_hash)])


async def drop_many(s: AsyncSession, items: list[tuple[int, str]]) -> list[str]:
    """`drop` for many messages in a few statements."""
    freed: list[str] = []
    for i in range(0, len(items), 500):
        chunk = items[i : i + 500]
        ids = [qid for qid, _ in chunk]
        await s.execute(delete(QueuedRecipient).where(QueuedRecipient.queue_id.in_(ids)))
        await s.execute(delete(QueuedMessage).where(QueuedMessage.id.in_(ids)))
        freed += await unreferenced_blobs(s, {h for _, h in chunk})
    return freed

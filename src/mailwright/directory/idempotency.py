"""Idempotency records: the store behind the API's `Idempotency-Key` (see api/idempotency.py).

A record is keyed by (caller, Idempotency-Key, endpoint). `claim` inserts it before the request
runs (so a concurrent retry sees "in progress", never a second run), `finish` stores the sealed
answer, `release` forgets a claim whose request must be allowed to run again. The HTTP layer
decides what to seal and how to answer; this module only keeps the rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import ColumnElement, and_, delete, select, update
from sqlalchemy.exc import IntegrityError

from mailwright.storage.db import Database
from mailwright.storage.models import IdempotencyRecord, utcnow

TTL = timedelta(hours=24)


@dataclass(frozen=True)
class Claim:
    """outcome: claimed | replay | reused (same key, other request) | in_progress."""

    outcome: str
    status: int | None = None
    body: str | None = None
    content_type: str | None = None


def _match(who: str, key: str, endpoint: str) -> ColumnElement[bool]:
    return and_(IdempotencyRecord.caller == who, IdempotencyRecord.idem_key == key,
                IdempotencyRecord.endpoint == endpoint)


async def claim(db: Database, who: str, key: str, endpoint: str, fingerprint: str) -> Claim:
    now = utcnow()
    for _ in range(2):
        try:
            async with db.write() as s:
                row = (await s.execute(select(IdempotencyRecord).where(_match(who, key, endpoint)))
                       ).scalar_one_or_none()
                if row is not None and row.created_at < now - TTL:
                    await s.delete(row)
                    await s.flush()
                    row = None
                if row is None:
                    s.add(IdempotencyRecord(caller=who, idem_key=key, endpoint=endpoint, request_hash=fingerprint))
                    return Claim("claimed")
                if row.request_hash != fingerprint:
                    return Claim("reused")
                if row.status is None:
                    return Claim("in_progress")
                return Claim("replay", row.status, row.body, row.content_type)
        except IntegrityError:  # PostgreSQL: a concurrent first request inserted it; look again
            continue
    return Claim("in_progress")


async def finish(db: Database, who: str, key: str, endpoint: str, status: int, body: str,
                 content_type: str | None) -> None:
    now = utcnow()
    async with db.write() as s:
        await s.execute(update(IdempotencyRecord).where(_match(who, key, endpoint)).values(
            status=status, body=body, content_type=content_type))
        if now.minute % 10 == 0:  # a cheap, occasional sweep of expired records
            await s.execute(delete(IdempotencyRecord).where(IdempotencyRecord.created_at < now - TTL))


async def release(db: Database, who: str, key: str, endpoint: str) -> None:
    async with db.write() as s:
        await s.execute(delete(IdempotencyRecord).where(_match(who, key, endpoint)))

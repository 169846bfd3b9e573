"""Per-account send limits (default 300 messages/hour and 7,200/day), shared by every process.

Decisions:

* **Counted per message**, like the reference ("300 emails per hour per account"): one
  submission counts once however many recipients it names. The recipient count per message is
  bounded separately by the submission server (RCPT limit), so a message cannot fan out freely.
* Limits are looked up principal -> tenant (and its resellers, nearest first) -> settings
  (`send_per_hour`, `send_per_day`). ``None`` means "inherit"; ``0`` means unlimited, as
  quotas do elsewhere.
* Fixed windows (the clock hour and the UTC day), stored as rows of `send_counters` keyed by
  (principal, window, window start). The check-and-count is one atomic
  ``INSERT ... ON CONFLICT DO UPDATE SET count = count + 1 WHERE count < limit RETURNING``
  per window, inside one transaction for both windows; it works the same on SQLite and
  PostgreSQL and holds across any number of `serve` processes sharing the database. When the
  daily window is full the hourly increment is rolled back with it, so a refused message is
  never counted.
* A refused send raises :class:`SendLimitExceeded` with ``retry_after`` = seconds until the
  window that refused it rolls over (SMTP answers 451 4.7.0, the APIs 429 + Retry-After).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from mailwright.services import Services
from mailwright.storage.models import Principal, SendCounter, Tenant

HOUR = 3600
DAY = 86400


class SendLimitExceeded(Exception):
    """The account has used its sending allowance; `retry_after` seconds until the next send."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after: int = max(1, int(retry_after + 0.999))


@dataclass(frozen=True)
class Limits:
    per_hour: int  # 0 = unlimited
    per_day: int


async def limits_for(session: AsyncSession, svc: Services, principal_id: str) -> Limits:
    hour: int | None = None
    day: int | None = None
    p = await session.get(Principal, principal_id)
    tenant_id = p.tenant_id if p is not None else None
    if p is not None:
        hour, day = p.send_per_hour, p.send_per_day
    depth = 0
    while tenant_id is not None and (hour is None or day is None) and depth < 8:
        t = await session.get(Tenant, tenant_id)
        if t is None:
            break
        hour = t.send_per_hour if hour is None else hour
        day = t.send_per_day if day is None else day
        tenant_id = t.parent_id
        depth += 1
    return Limits(
        per_hour=svc.settings.send_per_hour if hour is None else hour,
        per_day=svc.settings.send_per_day if day is None else day,
    )


async def _bump(session: AsyncSession, principal_id: str, window: str, start: int, limit: int) -> bool:
    """Count one send in the window unless it is full; True when counted."""
    dialect = session.get_bind().dialect.name
    ins = (sqlite.insert if dialect == "sqlite" else postgresql.insert)(SendCounter)
    upsert = ins.values(principal_id=principal_id, window=window, window_start=start, count=1)
    stmt = upsert.on_conflict_do_update(
        index_elements=[SendCounter.principal_id, SendCounter.window, SendCounter.window_start],
        set_={"count": SendCounter.count + 1},
        where=SendCounter.count < limit,
    ).returning(SendCounter.count)
    return (await session.execute(stmt)).first() is not None


async def check_and_count(svc: Services, principal_id: str, *, now: float | None = None) -> None:
    """Count one message for `principal_id`, or raise SendLimitExceeded (nothing counted)."""
    now = time.time() if now is None else now
    hour_start = int(now // HOUR) * HOUR
    day_start = int(now // DAY) * DAY
    async with svc.db.read() as s:
        lim = await limits_for(s, svc, principal_id)
    if lim.per_hour <= 0 and lim.per_day <= 0:
        return
    async with svc.db.write() as s:
        if lim.per_hour > 0 and not await _bump(s, principal_id, "h", hour_start, lim.per_hour):
            raise SendLimitExceeded(f"hourly sending limit of {lim.per_hour} messages reached",
                                    hour_start + HOUR - now)
        if lim.per_day > 0 and not await _bump(s, principal_id, "d", day_start, lim.per_day):
            raise SendLimitExceeded(f"daily sending limit of {lim.per_day} messages reached",
                                    day_start + DAY - now)
        # Old windows are useless; drop this account's, cheaply, while we hold the row lock.
        await s.execute(delete(SendCounter).where(SendCounter.principal_id == principal_id,
                                                  SendCounter.window_start < day_start - DAY))


async def usage(svc: Services, principal_id: str, *, now: float | None = None) -> dict[str, int]:
    """Messages counted in the current hour and day (for APIs that show the allowance)."""
    now = time.time() if now is None else now
    async with svc.db.read() as s:
        h = await s.get(SendCounter, (principal_id, "h", int(now // HOUR) * HOUR))
        d = await s.get(SendCounter, (principal_id, "d", int(now // DAY) * DAY))
    return {"hour": h.count if h else 0, "day": d.count if d else 0}

"""Storage quotas: an account's own quota and its tenant's, checked before accepting mail."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from mailwright.storage.models import Principal, Tenant


@dataclass(frozen=True)
class QuotaCheck:
    ok: bool
    too_big: bool = False  # the message alone exceeds the quota (5xx, not worth retrying)
    used: int = 0
    limit: int = 0


async def check(session: AsyncSession, principal_id: str, size: int) -> QuotaCheck:
    p = await session.get(Principal, principal_id)
    if p is None:
        return QuotaCheck(ok=False)
    if p.quota_bytes and p.used_bytes + size > p.quota_bytes:
        return QuotaCheck(ok=False, too_big=size > p.quota_bytes, used=p.used_bytes, limit=p.quota_bytes)
    if p.tenant_id:
        t = await session.get(Tenant, p.tenant_id)
        if t is not None and t.quota_bytes:
            used = (await session.execute(
                select(func.coalesce(func.sum(Principal.used_bytes), 0)).where(Principal.tenant_id == t.id)
            )).scalar_one()
            if int(used) + size > t.quota_bytes:
                return QuotaCheck(ok=False, too_big=size > t.quota_bytes, used=int(used), limit=t.quota_bytes)
    return QuotaCheck(ok=True, used=p.used_bytes, limit=p.quota_bytes)

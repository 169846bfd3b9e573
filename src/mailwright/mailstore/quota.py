"""Storage quotas: an account's own quota and its tenant's, checked before accepting mail."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from sqlalchemy import Table, bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from mailwright.storage.models import Principal, Tenant
from mailwright.storage.prepared import Prepared
from mailwright.storage.sqlrun import CoreRun, Reads


@dataclass(frozen=True)
class QuotaCheck:
    ok: bool
    too_big: bool = False  # the message alone exceeds the quota (5xx, not worth retrying)
    used: int = 0
    limit: int = 0


_PRIN = cast(Table, Principal.__table__)
_TEN = cast(Table, Tenant.__table__)
_ACCOUNT = Prepared(select(_PRIN.c.quota_bytes, _PRIN.c.used_bytes, _PRIN.c.tenant_id, _TEN.c.quota_bytes)
                    .select_from(_PRIN.outerjoin(_TEN, _TEN.c.id == _PRIN.c.tenant_id))
                    .where(_PRIN.c.id == bindparam("pid")))
_TENANT_USED = Prepared(select(func.coalesce(func.sum(_PRIN.c.used_bytes), 0))
                        .where(_PRIN.c.tenant_id == bindparam("tid")))


async def check(session: AsyncSession, principal_id: str, size: int) -> QuotaCheck:
    return await session.run_sync(lambda ss: check_sync(CoreRun(ss.connection()), principal_id, size))


def check_sync(run: Reads, principal_id: str, size: int) -> QuotaCheck:
    """Statements built once, run by a `sqlrun` runner: this runs for every RCPT the MX accepts."""
    rows = run.all_now(_ACCOUNT, {"pid": principal_id})
    if not rows:
        return QuotaCheck(ok=False)
    p = rows[0]
    quota_bytes, used_bytes, tenant_id, tenant_quota = int(p[0] or 0), int(p[1] or 0), p[2], p[3]
    if quota_bytes and used_bytes + size > quota_bytes:
        return QuotaCheck(ok=False, too_big=size > quota_bytes, used=used_bytes, limit=quota_bytes)
    if tenant_id and tenant_quota:
        used = int(run.all_now(_TENANT_USED, {"tid": tenant_id})[0][0])
        if used + size > tenant_quota:
            return QuotaCheck(ok=False, too_big=size > tenant_quota, used=used, limit=int(tenant_quota))
    return QuotaCheck(ok=True, used=used_bytes, limit=quota_bytes)

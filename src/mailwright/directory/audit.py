"""The audit log: who did what to which tenant, with which key, from where, and when.

Every administrative action of the reseller dialect (and the platform admin acting on resellers)
writes one row, in the same transaction as the change it records, so the log never claims a
change that was rolled back nor misses one that committed. Rows carry plain strings (no foreign
keys): the history of a terminated tenant outlives the tenant's data.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from mailwright.storage.models import AuditEntry

MAX_LIST = 1000


@dataclass(frozen=True)
class AuditView:
    id: int
    tenant_id: str | None
    actor: str | None
    key_id: str | None
    action: str
    target: str | None
    source_ip: str | None
    details: dict[str, Any]
    created_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "tenant_id": self.tenant_id, "actor": self.actor, "key_id": self.key_id,
            "action": self.action, "target": self.target, "source_ip": self.source_ip,
            "details": self.details, "created_at": self.created_at.isoformat(),
        }


async def record(
    session: AsyncSession,
    tenant_id: str | None,
    actor: str | None,
    key_id: str | None,
    action: str,
    target: str | None = None,
    source_ip: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Add one entry to the caller's (open) write transaction."""
    session.add(AuditEntry(
        tenant_id=tenant_id, actor=(actor or "")[:320] or None, key_id=key_id, action=action[:64],
        target=(target or "")[:320] or None, source_ip=(source_ip or "")[:64] or None, details=details or None,
    ))
    await session.flush()


async def list_entries(session: AsyncSession, tenant_id: str | None, limit: int = 100) -> list[AuditView]:
    """Newest first; `tenant_id` is the account whose log this is (a reseller's own row)."""
    limit = max(1, min(int(limit), MAX_LIST))
    q = select(AuditEntry).where(AuditEntry.tenant_id == tenant_id).order_by(AuditEntry.id.desc()).limit(limit)
    rows = (await session.execute(q)).scalars().all()
    return [
        AuditView(id=int(r.id), tenant_id=r.tenant_id, actor=r.actor, key_id=r.key_id, action=r.action,
                  target=r.target, source_ip=r.source_ip, details=dict(r.details or {}), created_at=r.created_at)
        for r in rows
    ]

"""A tenant's plan limits next to what it uses, for the operator's views (CLI, platform admin API).

Counts are the ones `directory.limits` enforces (individuals only; every domain row, pending
custom domains included; a reseller's over itself and its live sub-tenants), so what an operator
reads is exactly what the next creation is checked against.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from mailwright.directory import limits
from mailwright.storage.models import Tenant

__all__ = ["LimitsUsage", "usage"]


@dataclass(frozen=True)
class LimitsUsage:
    max_domains: int  # 0 = unlimited
    max_mailboxes: int
    domains: int
    mailboxes: int

    def as_dict(self) -> dict[str, Any]:
        return {"max_domains": self.max_domains, "max_mailboxes": self.max_mailboxes,
                "domains": self.domains, "mailboxes": self.mailboxes}

    def text(self) -> str:
        """`domains=3/10 mailboxes=7/unlimited` (used/limit)."""
        return (f"domains={self.domains}/{self.max_domains or 'unlimited'} "
                f"mailboxes={self.mailboxes}/{self.max_mailboxes or 'unlimited'}")


async def usage(session: AsyncSession, tenant: Tenant) -> LimitsUsage:
    return LimitsUsage(max_domains=int(tenant.max_domains or 0), max_mailboxes=int(tenant.max_mailboxes or 0),
                       domains=await limits.count_domains(session, tenant.id),
                       mailboxes=await limits.count_mailboxes(session, tenant.id))

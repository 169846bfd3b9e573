"""Tenants: the default tenant created at bootstrap, lookups, status checks."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from mailwright.directory.errors import NotFound
from mailwright.storage.models import Tenant, Workspace

DEFAULT_TENANT = "default"


async def ensure_default_tenant(session: AsyncSession) -> Tenant:
    """The tenant the platform admin key acts on when no tenant is named."""
    row = (await session.execute(select(Tenant).where(Tenant.name == DEFAULT_TENANT))).scalar_one_or_none()
    if row is None:
        row = Tenant(name=DEFAULT_TENANT, kind="tenant", plan="paid")
        session.add(row)
        await session.flush()
        session.add(Workspace(tenant_id=row.id, name="default", is_default=True))
        await session.flush()
    return row


async def get_tenant(session: AsyncSession, ident: str) -> Tenant:
    """By id or by name."""
    row = await session.get(Tenant, ident)
    if row is None:
        row = (await session.execute(select(Tenant).where(Tenant.name == ident))).scalar_one_or_none()
    if row is None or row.status == "terminated":
        raise NotFound(f"tenant {ident!r} not found")
    return row


async def default_workspace_id(session: AsyncSession, tenant_id: str) -> str | None:
    q = select(Workspace.id).where(Workspace.tenant_id == tenant_id, Workspace.is_default.is_(True))
    return (await session.execute(q)).scalar_one_or_none()


async def tenant_is_active(session: AsyncSession, tenant_id: str | None) -> bool:
    """A tenant and every reseller above it must be active for its mail and logins to work."""
    seen = 0
    while tenant_id is not None and seen < 8:
        t = await session.get(Tenant, tenant_id)
        if t is None or t.status != "active":
            return False
        tenant_id = t.parent_id
        seen += 1
    return True

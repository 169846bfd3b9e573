"""Domains: create, list, delete (deleting cascades to principals, addresses, keys and mail)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from mailwright.directory.errors import AlreadyExists, NotFound
from mailwright.directory.names import normalize_domain
from mailwright.storage.models import Domain


async def create_domain(
    session: AsyncSession, tenant_id: str | None, name: str, *, description: str | None = None,
    is_system: bool = False,
) -> Domain:
    canonical = normalize_domain(name)
    exists = (await session.execute(select(Domain.id).where(Domain.name == canonical))).first()
    if exists:
        raise AlreadyExists(f"domain {canonical} already exists", field="name", value=canonical)
    row = Domain(tenant_id=tenant_id, name=canonical, description=description, is_system=is_system,
                 verified=is_system)
    session.add(row)
    await session.flush()
    return row


async def get_domain(session: AsyncSession, name: str, tenant_id: str | None = None) -> Domain:
    """Tenant-scoped lookup; another tenant's domain is reported as not found (no leak)."""
    canonical = normalize_domain(name)
    row = (await session.execute(select(Domain).where(Domain.name == canonical))).scalar_one_or_none()
    if row is None or (tenant_id is not None and row.tenant_id != tenant_id):
        raise NotFound(f"domain {canonical} not found", field="name", value=canonical)
    return row


async def find_domain(session: AsyncSession, name: str) -> Domain | None:
    return (await session.execute(select(Domain).where(Domain.name == name))).scalar_one_or_none()


async def list_domains(
    session: AsyncSession, tenant_id: str | None, *, filter_text: str | None = None,
    offset: int = 0, limit: int | None = None,
) -> tuple[list[Domain], int]:
    q = select(Domain)
    if tenant_id is not None:
        q = q.where(Domain.tenant_id == tenant_id)
    if filter_text:
        q = q.where(Domain.name.contains(filter_text.lower()))
    total = (await session.execute(select(func.count()).select_from(q.subquery()))).scalar_one()
    q = q.order_by(Domain.name).offset(offset)
    if limit:
        q = q.limit(limit)
    return list((await session.execute(q)).scalars()), int(total)

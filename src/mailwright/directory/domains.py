"""Domains: create, list, update, delete.

Deleting a domain (like Stalwart and the Mailbux guide warn) removes every principal whose home
domain it is (accounts, aliases, forwarders) with their mail and blobs, every other principal's
addresses in it, its DKIM keys (foreign-key cascade) and the per-domain API keys that named it
(an `mxm_` key naming only this domain is deleted; one naming several loses this entry).
Principals of other domains that merely listed an address of it as a member keep the entry.

A deleted domain (and every domain of a terminated tenant) is remembered as retired: its
addresses then answer 550 5.1.1 (unknown user) rather than 554 relay-denied, until it is added
again.

Catch-all: a domain may name one principal of its own that receives mail for unknown
addresses (`directory.routing` consults it last), set with `update_domain(..., catch_all=...)`.

A tenant's `max_domains` (and its reseller's) is checked here, in the inserting transaction
(`directory.limits`): every dialect and the CLI create domains through `create_domain`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from mailwright.directory import limits
from mailwright.directory.errors import AlreadyExists, Invalid, NotFound
from mailwright.directory.names import normalize_domain
from mailwright.storage.models import ApiKey, Domain, Principal, RetiredDomain

if TYPE_CHECKING:
    from mailwright.directory.tenants import Actor
    from mailwright.services import Services

_UNSET = object()


async def create_domain(
    session: AsyncSession, tenant_id: str | None, name: str, *, description: str | None = None,
    is_system: bool = False, actor: Actor | None = None,
) -> Domain:
    canonical = normalize_domain(name)
    exists = (await session.execute(select(Domain.id).where(Domain.name == canonical))).first()
    if exists:
        raise AlreadyExists(f"domain {canonical} already exists", field="name", value=canonical)
    await limits.check_room(session, tenant_id, domains=1)
    row = Domain(tenant_id=tenant_id, name=canonical, description=description, is_system=is_system,
                 verified=is_system)
    await session.execute(delete(RetiredDomain).where(RetiredDomain.name == canonical))
    session.add(row)
    try:
        await session.flush()
    except IntegrityError:  # a concurrent create won (PostgreSQL); the transaction is rolled back
        raise AlreadyExists(f"domain {canonical} already exists", field="name", value=canonical) from None
    await _log(session, actor, "domain.create", canonical)
    return row


async def _log(session: AsyncSession, actor: Actor | None, action: str, target: str, **details: object) -> None:
    if actor is not None:
        from mailwright.directory.tenants import log_action

        await log_action(session, actor, action, target, **details)


async def get_domain(session: AsyncSession, name: str, tenant_id: str | None = None) -> Domain:
    """Tenant-scoped lookup; another tenant's domain is reported as not found (no leak)."""
    canonical = normalize_domain(name)
    row = (await session.execute(select(Domain).where(Domain.name == canonical))).scalar_one_or_none()
    if row is None or (tenant_id is not None and row.tenant_id != tenant_id):
        raise NotFound(f"domain {canonical} not found", field="name", value=canonical)
    return row


async def retire_domains(session: AsyncSession, names: list[str]) -> None:
    for name in names:
        if await session.get(RetiredDomain, name) is None:
            session.add(RetiredDomain(name=name))
    await session.flush()


async def is_retired(session: AsyncSession, name: str) -> bool:
    return await session.get(RetiredDomain, name) is not None


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


async def update_domain(
    session: AsyncSession, tenant_id: str | None, name: str, *, description: object = _UNSET,
    catch_all: object = _UNSET, actor: Actor | None = None,
) -> Domain:
    """Change a domain's description and/or catch-all (an address or name of a principal of this
    domain's tenant, or None to clear it)."""
    from mailwright.directory.principals import find_principal

    dom = await get_domain(session, name, tenant_id)
    if description is not _UNSET:
        if description is not None and not isinstance(description, str):
            raise Invalid("description must be a string", field="description")
        dom.description = description
    if catch_all is not _UNSET:
        if catch_all is None or catch_all == "":
            dom.catch_all_principal_id = None
        else:
            if not isinstance(catch_all, str):
                raise Invalid("catchAll must be an address", field="catchAll")
            p = await find_principal(session, catch_all)
            if p is None or p.tenant_id != dom.tenant_id:
                raise Invalid(f"catch-all target {catch_all!r} does not exist", field="catchAll",
                              value=catch_all)
            dom.catch_all_principal_id = p.id
    await session.flush()
    changed = [f for f, v in (("description", description), ("catchAll", catch_all)) if v is not _UNSET]
    await _log(session, actor, "domain.update", dom.name, fields=changed)
    return dom


async def delete_domain(svc: Services, tenant_id: str | None, name: str, *, actor: Actor | None = None) -> None:
    """Delete a domain and everything that lives in it (see the module docstring)."""
    from mailwright.directory.principals import delete_principal_rows
    from mailwright.mailstore.changes import remove_blob_files

    freed: list[str] = []
    async with svc.db.write() as s:
        dom = await get_domain(s, name, tenant_id)
        members = list((await s.execute(select(Principal).where(Principal.domain_id == dom.id))).scalars())
        for p in members:
            freed += await delete_principal_rows(s, p)
        keys = (await s.execute(select(ApiKey).where(ApiKey.tenant_id == dom.tenant_id,
                                                     ApiKey.scope == "domain"))).scalars()
        for key in list(keys):
            perms = dict(key.permissions or {})
            if dom.name not in perms:
                continue
            perms.pop(dom.name)
            if perms:
                key.permissions = perms
            else:
                await s.delete(key)
        await s.flush()
        await s.execute(delete(Domain).where(Domain.id == dom.id))
        await retire_domains(s, [dom.name])
        await _log(s, actor, "domain.delete", dom.name, principals=len(members))
    remove_blob_files(svc, freed)

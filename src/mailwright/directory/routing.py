"""Recipient routing: what an RCPT TO address means for us.

Order (as Postfix virtual + Stalwart do it): exact address -> address without its +detail ->
the domain's catch-all. A retired domain (deleted, or its tenant terminated) is unknown, not
relay. Lists expand recursively (bounded depth, loops cut) into local
mailboxes and external forward targets. A domain we do not host is a relay attempt, and so is
a self-service custom domain still pending verification (verified False, verify_token set):
otherwise claiming gmail.com would capture our users' outbound mail to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from mailwright.directory.domains import is_retired
from mailwright.directory.tenants import tenant_is_active
from mailwright.storage.models import Address, Domain, ListMember, Principal

MAX_LIST_DEPTH = 5


@dataclass
class Route:
    """kind: local | unknown | relay | deferred (suspended tenant) | disabled (paused principal)."""

    kind: str
    mailboxes: list[str] = field(default_factory=list)  # principal ids of individuals
    forwards: list[str] = field(default_factory=list)  # external addresses
    tenant_id: str | None = None
    list_id: str | None = None  # set when the address itself is a list (forwards get SRS)


async def _principal_for(session: AsyncSession, address: str, dom: Domain) -> Principal | None:
    q = select(Principal).join(Address, Address.principal_id == Principal.id).where(Address.address == address)
    p = (await session.execute(q)).scalar_one_or_none()
    if p is not None:
        return p
    local, _, domain = address.rpartition("@")
    if "+" in local:
        base = local.split("+", 1)[0] + "@" + domain
        q2 = select(Principal).join(Address, Address.principal_id == Principal.id).where(Address.address == base)
        p = (await session.execute(q2)).scalar_one_or_none()
        if p is not None:
            return p
    if dom.catch_all_principal_id:
        return await session.get(Principal, dom.catch_all_principal_id)
    return None


async def resolve(session: AsyncSession, address: str) -> Route:
    """Route an already-normalised address (lowercase local@idna-domain)."""
    _, _, domain = address.rpartition("@")
    dom = (await session.execute(select(Domain).where(Domain.name == domain))).scalar_one_or_none()
    if dom is None:
        return Route(kind="unknown" if await is_retired(session, domain) else "relay")
    if not dom.verified and dom.verify_token:  # a claimed, unproven custom domain is not ours
        return Route(kind="relay")
    p = await _principal_for(session, address, dom)
    if p is None:
        return Route(kind="unknown", tenant_id=dom.tenant_id)
    if not await tenant_is_active(session, p.tenant_id):
        return Route(kind="deferred", tenant_id=p.tenant_id)
    route = Route(kind="local", tenant_id=p.tenant_id, list_id=p.id if p.type == "list" else None)
    await _expand(session, p, route, depth=0, seen=set())
    if not route.mailboxes and not route.forwards:
        route.kind = "unknown"
    return route


async def _expand(session: AsyncSession, p: Principal, route: Route, depth: int, seen: set[str]) -> None:
    if p.id in seen or depth > MAX_LIST_DEPTH:
        return
    seen.add(p.id)
    if p.type == "individual":
        if p.id not in route.mailboxes:
            route.mailboxes.append(p.id)
        return
    members = (await session.execute(select(ListMember.member).where(ListMember.list_id == p.id))).scalars()
    for member in list(members):
        q = select(Principal).join(Address, Address.principal_id == Principal.id).where(Address.address == member)
        target = (await session.execute(q)).scalar_one_or_none()
        if target is not None:
            await _expand(session, target, route, depth + 1, seen)
            continue
        _, _, mdomain = member.rpartition("@")
        hosted = (await session.execute(select(Domain.id).where(
            Domain.name == mdomain, or_(Domain.verified.is_(True), Domain.verify_token.is_(None))))).first()
        if hosted is None and member not in route.forwards:
            route.forwards.append(member)

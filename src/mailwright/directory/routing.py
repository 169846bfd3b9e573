"""Recipient routing: what an RCPT TO address means for us.

Order (as Postfix virtual + Stalwart do it): exact address -> address without its +detail ->
the domain's catch-all -> for ``postmaster@`` (which RFC 5321 4.5.1 requires every domain to
accept; DMARC and TLS-RPT reports are sent there, see dnsrecords/expected.py) the domain's
first account, the one that set the domain up. A retired domain (deleted, or its tenant terminated) is unknown, not
relay. Lists expand recursively (bounded depth, loops cut) into local
mailboxes and external forward targets. A domain we do not host is a relay attempt, and so is
a self-service custom domain still pending verification (verified False, verify_token set):
otherwise claiming gmail.com would capture our users' outbound mail to it.

Every lookup is a statement built once, run in one synchronous pass by a `storage.sqlrun`
runner (``resolve_sync``: raw sqlite3 or Core): RCPT is on the MX's hot path, and ORM loads
cost ~1 ms of CPU per recipient, more than the rest of the RCPT command.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Table, bindparam, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from mailwright.storage.models import Address, Domain, ListMember, Principal, RetiredDomain, Tenant
from mailwright.storage.prepared import Prepared
from mailwright.storage.sqlrun import CoreRun, Reads

MAX_LIST_DEPTH = 5
MAX_TENANT_DEPTH = 8


@dataclass
class Route:
    """kind: local | unknown | relay | deferred (suspended tenant) | disabled (paused principal)."""

    kind: str
    mailboxes: list[str] = field(default_factory=list)  # principal ids of individuals
    forwards: list[str] = field(default_factory=list)  # external addresses
    tenant_id: str | None = None
    list_id: str | None = None  # set when the address itself is a list (forwards get SRS)


_DOM = cast(Table, Domain.__table__)
_ADDR = cast(Table, Address.__table__)
_PRIN = cast(Table, Principal.__table__)
_TEN = cast(Table, Tenant.__table__)
_MEMBER = cast(Table, ListMember.__table__)
_RETIRED = cast(Table, RetiredDomain.__table__)

_DOMAIN = Prepared(select(_DOM.c.tenant_id, _DOM.c.verified, _DOM.c.verify_token, _DOM.c.catch_all_principal_id,
                          _DOM.c.id)
                   .where(_DOM.c.name == bindparam("name")))
_RETIRED_NAME = Prepared(select(_RETIRED.c.name).where(_RETIRED.c.name == bindparam("name")))
# A principal with its tenant's status and parent in one lookup (the tenant check below then
# reads nothing more for a tenant without a reseller above it).
_PRINCIPAL_COLS = (_PRIN.c.id, _PRIN.c.type, _PRIN.c.tenant_id, _TEN.c.status, _TEN.c.parent_id)
_PRINCIPAL_BY_ADDRESS = Prepared(select(*_PRINCIPAL_COLS)
                                 .select_from(_ADDR.join(_PRIN, _PRIN.c.id == _ADDR.c.principal_id)
                                              .outerjoin(_TEN, _TEN.c.id == _PRIN.c.tenant_id))
                                 .where(_ADDR.c.address == bindparam("address")))
_PRINCIPAL_BY_ID = Prepared(select(*_PRINCIPAL_COLS).select_from(_PRIN.outerjoin(_TEN, _TEN.c.id == _PRIN.c.tenant_id))
                            .where(_PRIN.c.id == bindparam("pid")))
_POSTMASTER = Prepared(select(*_PRINCIPAL_COLS).select_from(_PRIN.outerjoin(_TEN, _TEN.c.id == _PRIN.c.tenant_id))
                       .where(_PRIN.c.domain_id == bindparam("did"), _PRIN.c.type == "individual")
                       .order_by(_PRIN.c.created_at, _PRIN.c.id).limit(1))
_TENANT = Prepared(select(_TEN.c.status, _TEN.c.parent_id).where(_TEN.c.id == bindparam("tid")))
_MEMBERS = Prepared(select(_MEMBER.c.member).where(_MEMBER.c.list_id == bindparam("lid")))
_HOSTED = Prepared(select(_DOM.c.id).where(_DOM.c.name == bindparam("name"),
                                           or_(_DOM.c.verified.is_(True), _DOM.c.verify_token.is_(None))))


async def resolve(session: AsyncSession, address: str) -> Route:
    """Route an already-normalised address (lowercase local@idna-domain)."""
    return await session.run_sync(lambda ss: resolve_sync(CoreRun(ss.connection()), address))


def resolve_sync(run: Reads, address: str) -> Route:
    _, _, domain = address.rpartition("@")
    doms = run.all_now(_DOMAIN, {"name": domain})
    if not doms:
        retired = bool(run.all_now(_RETIRED_NAME, {"name": domain}))
        return Route(kind="unknown" if retired else "relay")
    tenant_id, verified, verify_token, catch_all, domain_id = doms[0]
    if not verified and verify_token:  # a claimed, unproven custom domain is not ours
        return Route(kind="relay")
    p = _principal_for(run, address, catch_all)
    if p is None and address.partition("@")[0] == "postmaster":
        p = _first(run.all_now(_POSTMASTER, {"did": domain_id}))
    if p is None:
        return Route(kind="unknown", tenant_id=tenant_id)
    pid, ptype, ptenant, tstatus, tparent = p
    if ptenant is not None and (tstatus != "active" or not tenant_active_sync(run, tparent)):
        return Route(kind="deferred", tenant_id=ptenant)
    route = Route(kind="local", tenant_id=ptenant, list_id=pid if ptype == "list" else None)
    _expand(run, pid, ptype, route, depth=0, seen=set())
    if not route.mailboxes and not route.forwards:
        route.kind = "unknown"
    return route


def tenant_active_sync(run: Reads, tenant_id: str | None) -> bool:
    """A tenant and every reseller above it must be active (directory.tenants.tenant_is_active)."""
    seen = 0
    while tenant_id is not None and seen < MAX_TENANT_DEPTH:
        rows = run.all_now(_TENANT, {"tid": tenant_id})
        t = rows[0] if rows else None
        if t is None or t[0] != "active":
            return False
        tenant_id = t[1]
        seen += 1
    return True


def _first(rows: list[Any]) -> tuple[str, str, str | None, str | None, str | None] | None:
    """(id, type, tenant id, tenant status, tenant parent) of the first row."""
    if not rows:
        return None
    r = rows[0]
    return str(r[0]), str(r[1]), r[2], r[3], r[4]


def _principal_for(run: Reads, address: str,
                   catch_all: str | None) -> tuple[str, str, str | None, str | None, str | None] | None:
    rows = run.all_now(_PRINCIPAL_BY_ADDRESS, {"address": address})
    if not rows:
        local, _, domain = address.rpartition("@")
        if "+" in local:
            base = local.split("+", 1)[0] + "@" + domain
            rows = run.all_now(_PRINCIPAL_BY_ADDRESS, {"address": base})
    if not rows and catch_all:
        rows = run.all_now(_PRINCIPAL_BY_ID, {"pid": catch_all})
    return _first(rows)


def _expand(run: Reads, pid: str, ptype: str, route: Route, depth: int, seen: set[str]) -> None:
    if pid in seen or depth > MAX_LIST_DEPTH:
        return
    seen.add(pid)
    if ptype == "individual":
        if pid not in route.mailboxes:
            route.mailboxes.append(pid)
        return
    for (member,) in run.all_now(_MEMBERS, {"lid": pid}):
        targets = run.all_now(_PRINCIPAL_BY_ADDRESS, {"address": member})
        if targets:
            _expand(run, str(targets[0][0]), str(targets[0][1]), route, depth + 1, seen)
            continue
        _, _, mdomain = member.rpartition("@")
        hosted = run.all_now(_HOSTED, {"name": mdomain})
        if not hosted and member not in route.forwards:
            route.forwards.append(member)

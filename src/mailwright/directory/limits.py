"""Tenant plan limits: how many domains and mailboxes a tenant may have (`Tenant.max_domains`,
`Tenant.max_mailboxes`, 0 = unlimited), enforced here once for every way of creating them.

Every creation path calls `check_room` inside the write transaction that inserts the row:
`domains.create_domain` (management API, CLI, mail.cx Pro custom domains),
`principals.create_principal` (management API, CLI, mail.cx sign-up with a Pro token) and
`inboxes.create_inbox` (agent API). Dialects only render the error.

Decisions (the reference documents are silent on the counting; chosen as hosting panels do):

* A **mailbox** is an individual principal (it logs in and stores mail). Lists (aliases and
  forwarders) are not mailboxes and are not counted, as the reseller overview counts "email"
  and "alias" separately and as cPanel/DirectAdmin plans count email accounts apart from
  forwarders. A **domain** is any domain row of the tenant, pending custom domains included (a
  pending claim already holds the name).
* A **reseller's** own limits bound the total over itself and its live sub-tenants, the way
  `pool_bytes` bounds their storage: a sub-tenant is refused when it, or any reseller above
  it, is full.
* **Races.** Before counting, the limited tenant rows are locked (``SELECT ... FOR UPDATE`` on
  PostgreSQL, reseller first, the order `tenants.create_subtenant`/`set_quota` lock in, so no
  deadlock; SQLite writers are already serial): two concurrent creates never both take the last
  slot. Tenants without limits take no lock (the bulk-provisioning path stays cheap).
* **Lowering** a limit below the current count is allowed: nothing is deleted, creations are
  refused until the tenant is below it again (a plan downgrade must not destroy mail).
* Platform-owned objects (tenant None: system domains and self-service accounts on them) have
  no tenant and so no limit here; mail.cx's per-IP and `pro_max_domains` caps are separate.
* **Errors**: `DomainLimitReached` / `MailboxLimitReached` (code ``limitReached``). Rendered as
  management ``403 {"error": "limitReached"}`` (the Mailbux guide's 403 "permission denied"
  class; Stalwart's API has no code for it), agent ``403 PLAN_LIMIT_REACHED`` (the reference's
  "Plan limit reached"), mail.cx ``403 account_limit_reached`` / ``domain_limit_reached`` (the
  reference's own codes).
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from mailwright.directory.errors import DomainLimitReached, Invalid, MailboxLimitReached, NotFound
from mailwright.storage.models import Domain, Principal, Tenant

__all__ = ["check_room", "count_domains", "count_mailboxes", "set_limits"]

MAX_DEPTH = 8  # reseller -> tenant today; bounded like tenants.tenant_is_active
MAX_LIMIT = 2**31 - 1  # the columns are 32-bit INTEGER: a larger value is a 400, not a database error


async def _chain(session: AsyncSession, tenant_id: str) -> list[Tenant]:
    """The tenant and every reseller above it, nearest first."""
    out: list[Tenant] = []
    cur: str | None = tenant_id
    while cur is not None and len(out) < MAX_DEPTH:
        t = await session.get(Tenant, cur)
        if t is None:
            break
        out.append(t)
        cur = t.parent_id
    return out


def _in_subtree(col: InstrumentedAttribute[str | None], tenant_id: str) -> ColumnElement[bool]:
    """`col` names the tenant itself or one of its live sub-tenants."""
    children = select(Tenant.id).where(Tenant.parent_id == tenant_id, Tenant.status != "terminated")
    return or_(col == tenant_id, col.in_(children))


async def count_mailboxes(session: AsyncSession, tenant_id: str) -> int:
    q = select(func.count()).select_from(Principal).where(_in_subtree(Principal.tenant_id, tenant_id),
                                                          Principal.type == "individual")
    return int((await session.execute(q)).scalar_one())


async def count_domains(session: AsyncSession, tenant_id: str) -> int:
    q = select(func.count()).select_from(Domain).where(_in_subtree(Domain.tenant_id, tenant_id))
    return int((await session.execute(q)).scalar_one())


async def _locked_limits(session: AsyncSession, tenant_id: str) -> tuple[int, int, str]:
    """(max_domains, max_mailboxes, kind) read under a row lock (PostgreSQL), fresh after it."""
    q = select(Tenant.max_domains, Tenant.max_mailboxes, Tenant.kind).where(Tenant.id == tenant_id).with_for_update()
    row = (await session.execute(q)).one()
    return int(row[0] or 0), int(row[1] or 0), str(row[2])


async def check_room(session: AsyncSession, tenant_id: str | None, *, domains: int = 0, mailboxes: int = 0) -> None:
    """Raise if adding `domains` domains / `mailboxes` mailboxes to `tenant_id` would pass its
    limit or a reseller's above it. Call it in the transaction that then inserts them."""
    if tenant_id is None or (domains <= 0 and mailboxes <= 0):
        return
    chain = await _chain(session, tenant_id)
    limited = [t for t in chain if (domains > 0 and t.max_domains) or (mailboxes > 0 and t.max_mailboxes)]
    for t in reversed(limited):  # outermost reseller first: the lock order used elsewhere
        max_domains, max_mailboxes, kind = await _locked_limits(session, t.id)
        whose = "the reseller's plan" if kind == "reseller" else "the plan"
        if domains > 0 and max_domains:
            n = await count_domains(session, t.id)
            if n + domains > max_domains:
                raise DomainLimitReached(f"domain limit reached: {whose} allows at most {max_domains} domains "
                                         f"({n} in use)", field="domains", value=max_domains)
        if mailboxes > 0 and max_mailboxes:
            n = await count_mailboxes(session, t.id)
            if n + mailboxes > max_mailboxes:
                raise MailboxLimitReached(f"mailbox limit reached: {whose} allows at most {max_mailboxes} "
                                          f"mailboxes ({n} in use)", field="mailboxes", value=max_mailboxes)


def _limit(value: object, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_LIMIT:
        raise Invalid(f"{field} must be an integer from 0 to {MAX_LIMIT} (0 = unlimited)", field=field,
                      value=value)
    return value


async def set_limits(session: AsyncSession, tenant_id: str, *, max_domains: object = None,
                     max_mailboxes: object = None) -> Tenant:
    """Set a tenant's (or reseller's) limits; None leaves one unchanged. See the module docstring
    for lowering a limit below the current count."""
    t = await session.get(Tenant, tenant_id)
    if t is None or t.status == "terminated":
        raise NotFound("tenant not found")
    if max_domains is not None:
        t.max_domains = _limit(max_domains, "max_domains")
    if max_mailboxes is not None:
        t.max_mailboxes = _limit(max_mailboxes, "max_mailboxes")
    await session.flush()
    return t

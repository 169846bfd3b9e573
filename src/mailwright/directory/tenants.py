"""Tenants: the default tenant, lookups, status checks, and a reseller's sub-tenant lifecycle.

Decisions (the reseller document is silent on them; chosen as a hosting panel would):
- A sub-tenant is a `Tenant(kind="tenant", parent_id=<reseller>)`. Its admin credentials are
  generated: username `user` + 8 random digits, tenant name `<username>_tent`, a 128-bit random
  hex password returned once and stored only as an Argon2id hash (`admin_password_hash`).
- Quotas are given in GB where 1 GB = 2**30 bytes (as Dovecot/Stalwart count storage); fractions
  are allowed. A sub-tenant's quota bounds the sum of its mailboxes (`mailstore.quota.check`).
- The reseller's pool (`pool_bytes`, 0 = unlimited) bounds the sum of its live sub-tenants'
  quotas; `max_tenants` (0 = unlimited) bounds how many live (non-terminated) sub-tenants it has.
- Shrinking a quota below what the tenant already stores is refused (`QuotaBelowUsage`, the
  reseller dialect's 422 QUOTA_BELOW_USAGE): accepting it would silently stop the customer's
  mail, which a billing downgrade should never do; the caller must have the customer clean up.
- Suspend / reactivate / terminate are idempotent (a billing system retries): repeating one is a
  no-op reported as `changed=False`. Status is read from the database on every login, RCPT and
  API key use, so a change is effective at once in every process and node.
- Termination deletes every domain, principal (mailboxes, addresses, credentials), message,
  queued outbound message, key, webhook, send counter and workspace of the tenant in one
  transaction, garbage-collects the blobs no longer referenced, and keeps the tenant row as a
  `terminated` tombstone (so its username is never reused and the audit log still names it);
  its quota no longer counts against the reseller's pool. Its addresses are then no longer
  ours: the MX refuses them permanently (554 5.7.1, the domain is gone — never a 4xx).
- Every change publishes `account.changed` for each principal of the tenant (data: reason,
  tenant_id) so long-lived sessions (IMAP IDLE, JMAP push) can re-check and drop the session.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from mailwright.directory import audit, passwords
from mailwright.directory.domains import retire_domains
from mailwright.directory.errors import Forbidden, Invalid, LimitReached, NotFound, QuotaExceeded
from mailwright.storage.models import (
    ApiKey,
    Domain,
    Mailbox,
    Message,
    Principal,
    QueuedMessage,
    QueuedRecipient,
    SendCounter,
    Tenant,
    Webhook,
    Workspace,
    utcnow,
)

if TYPE_CHECKING:
    from mailwright.services import Services

DEFAULT_TENANT = "default"
GIB = 1024**3
LOGIN_KEY_TTL = timedelta(hours=12)


class PlanUpgradeRequired(Forbidden):
    code = "planUpgradeRequired"


class TenantLimitReached(LimitReached):
    code = "tenantLimit"


class PoolExceeded(QuotaExceeded):
    code = "poolExceeded"


class QuotaBelowUsage(Invalid):
    code = "quotaBelowUsage"


@dataclass(frozen=True)
class Actor:
    """Who performs an audited action: written to the audit log of `log_tenant_id`."""

    log_tenant_id: str | None
    name: str | None
    key_id: str | None = None
    source_ip: str | None = None


async def log_action(s: AsyncSession, actor: Actor | None, action: str, target: str | None, **details: object) -> None:
    if actor is not None:
        await audit.record(s, actor.log_tenant_id, actor.name, actor.key_id, action, target, actor.source_ip,
                           dict(details) or None)


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


async def inactive_tenant_ids(session: AsyncSession) -> set[str]:
    """Every tenant whose mail is paused: suspended/terminated itself or under such a reseller.

    For batch work (the outbound queue runner skips these tenants' items without one query per
    item). Small: only non-active rows and their direct children are read.
    """
    down = set((await session.execute(select(Tenant.id).where(Tenant.status != "active"))).scalars())
    if down:
        down |= set((await session.execute(select(Tenant.id).where(Tenant.parent_id.in_(down)))).scalars())
    return down


# --- quotas -----------------------------------------------------------------------------------

def gb_to_bytes(value: object, *, field: str = "quota_gb") -> int:
    """A positive number of GB (2**30 bytes) -> bytes; bools, strings, NaN, <= 0 are refused."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Invalid(f"{field} must be a positive number", field=field, value=value)
    if not value > 0 or value != value or value > 1024**2:  # NaN, <= 0, or beyond 1 PB
        raise Invalid(f"{field} must be a positive number of GB (at most 1048576)", field=field, value=value)
    b = int(round(value * GIB))
    if b < 1:
        raise Invalid(f"{field} is too small", field=field, value=value)
    return b


def bytes_to_gb(b: int) -> float | int:
    gb = b / GIB
    return int(gb) if gb == int(gb) else round(gb, 6)


async def tenant_used_bytes(session: AsyncSession, tenant_id: str) -> int:
    q = select(func.coalesce(func.sum(Principal.used_bytes), 0)).where(Principal.tenant_id == tenant_id)
    return int((await session.execute(q)).scalar_one())


async def allocated_bytes(session: AsyncSession, reseller_id: str, *, excluding: str | None = None) -> int:
    q = select(func.coalesce(func.sum(Tenant.quota_bytes), 0)).where(
        Tenant.parent_id == reseller_id, Tenant.status != "terminated")
    if excluding is not None:
        q = q.where(Tenant.id != excluding)
    return int((await session.execute(q)).scalar_one())


def _check_pool(reseller: Tenant, allocated: int, wanted: int) -> None:
    if reseller.pool_bytes and allocated + wanted > reseller.pool_bytes:
        free = max(reseller.pool_bytes - allocated, 0)
        raise PoolExceeded(
            f"requested quota {bytes_to_gb(wanted)} GB exceeds the available quota of {bytes_to_gb(free)} GB "
            f"(pool {bytes_to_gb(reseller.pool_bytes)} GB, allocated {bytes_to_gb(allocated)} GB)",
            field="quota_gb")


# --- sub-tenants ------------------------------------------------------------------------------

async def _lock(session: AsyncSession, tenant_id: str) -> Tenant | None:
    """The row, locked for the rest of the transaction on PostgreSQL (SQLite writers are serial)."""
    q = select(Tenant).where(Tenant.id == tenant_id).with_for_update()
    return (await session.execute(q)).scalar_one_or_none()


async def _unused_username(session: AsyncSession) -> str:
    for _ in range(50):
        username = f"user{secrets.randbelow(90_000_000) + 10_000_000}"
        q = select(Tenant.id).where((Tenant.admin_username == username) | (Tenant.name == f"{username}_tent"))
        if (await session.execute(q)).first() is None:
            return username
    raise LimitReached("could not allocate a tenant username")  # pragma: no cover - 90M names


async def create_subtenant(svc: Services, reseller_id: str, quota_bytes: int, actor: Actor | None = None
                           ) -> tuple[Tenant, str]:
    """A new sub-tenant and its admin password (the only time it exists in clear)."""
    password = secrets.token_hex(16)
    pw_hash = await passwords.hash_password(password)  # before the write lock: never hash under it
    async with svc.db.write() as s:
        reseller = await _lock(s, reseller_id)
        if reseller is None or reseller.kind != "reseller" or reseller.status == "terminated":
            raise NotFound("reseller not found")
        if reseller.plan == "free":
            raise PlanUpgradeRequired("free plan resellers cannot create tenants: upgrade to a paid plan")
        if reseller.max_tenants:
            live = (await s.execute(select(func.count()).select_from(Tenant).where(
                Tenant.parent_id == reseller.id, Tenant.status != "terminated"))).scalar_one()
            if int(live) >= reseller.max_tenants:
                raise TenantLimitReached(f"maximum number of tenants reached ({reseller.max_tenants})")
        _check_pool(reseller, await allocated_bytes(s, reseller.id), quota_bytes)
        username = await _unused_username(s)
        t = Tenant(parent_id=reseller.id, kind="tenant", name=f"{username}_tent", plan=reseller.plan,
                   status="active", quota_bytes=quota_bytes, admin_username=username, admin_password_hash=pw_hash)
        s.add(t)
        await s.flush()
        s.add(Workspace(tenant_id=t.id, name="default", is_default=True))
        await log_action(s, actor, "tenant.create", username, tenant_id=t.id, quota_bytes=quota_bytes)
    return t, password


async def find_subtenant(session: AsyncSession, reseller_id: str, ident: str, *, include_terminated: bool = False
                         ) -> Tenant:
    """A reseller's own sub-tenant by id or admin username; anyone else's is "not found" (no leak)."""
    row = await session.get(Tenant, ident) if len(ident) <= 36 else None
    if row is None:
        row = (await session.execute(select(Tenant).where(Tenant.admin_username == ident))).scalar_one_or_none()
    if row is None or row.parent_id != reseller_id or (row.status == "terminated" and not include_terminated):
        raise NotFound(f"tenant {ident!r} not found")
    return row


async def list_subtenants(session: AsyncSession, reseller_id: str) -> list[Tenant]:
    q = select(Tenant).where(Tenant.parent_id == reseller_id, Tenant.status != "terminated").order_by(
        Tenant.created_at, Tenant.id)
    return list((await session.execute(q)).scalars())


async def _principal_ids(session: AsyncSession, tenant_id: str) -> list[str]:
    return list((await session.execute(select(Principal.id).where(Principal.tenant_id == tenant_id))).scalars())


async def _announce(svc: Services, principal_ids: list[str], reason: str, tenant_id: str) -> None:
    from mailwright.events.bus import Event

    for pid in principal_ids:
        await svc.events.publish(Event(type="account.changed", principal_id=pid,
                                       data={"reason": reason, "tenant_id": tenant_id}))


async def announce_reseller(svc: Services, reseller_id: str, reason: str) -> int:
    """`account.changed` for every principal under a reseller (its own status changed)."""
    async with svc.db.read() as s:
        children = select(Tenant.id).where(Tenant.parent_id == reseller_id)
        q = select(Principal.id, Principal.tenant_id).where(
            (Principal.tenant_id.in_(children)) | (Principal.tenant_id == reseller_id))
        rows = (await s.execute(q)).all()
    for pid, tid in rows:
        await _announce(svc, [pid], reason, str(tid))
    return len(rows)


async def set_status(svc: Services, reseller_id: str, ident: str, status: str, actor: Actor | None = None
                     ) -> tuple[Tenant, bool]:
    """Suspend (status="suspended") or reactivate (status="active"); (tenant, changed)."""
    assert status in ("active", "suspended")
    async with svc.db.write() as s:
        found = await find_subtenant(s, reseller_id, ident)
        t = await _lock(s, found.id)
        assert t is not None
        if t.status == status:
            return t, False
        t.status = status
        t.updated_at = utcnow()
        pids = await _principal_ids(s, t.id)
        action = "tenant.suspend" if status == "suspended" else "tenant.reactivate"
        await log_action(s, actor, action, t.admin_username, tenant_id=t.id)
    await _announce(svc, pids, "tenant.suspended" if status == "suspended" else "tenant.reactivated", t.id)
    return t, True


async def set_quota(svc: Services, reseller_id: str, ident: str, quota_bytes: int, actor: Actor | None = None
                    ) -> Tenant:
    async with svc.db.write() as s:
        reseller = await _lock(s, reseller_id)
        if reseller is None:
            raise NotFound("reseller not found")
        found = await find_subtenant(s, reseller_id, ident)
        t = await _lock(s, found.id)
        assert t is not None
        old = t.quota_bytes
        if quota_bytes > old:
            _check_pool(reseller, await allocated_bytes(s, reseller.id, excluding=t.id), quota_bytes)
        used = await tenant_used_bytes(s, t.id)
        if quota_bytes < used:
            raise QuotaBelowUsage(
                f"tenant stores {used} bytes ({bytes_to_gb(used)} GB); a quota of {bytes_to_gb(quota_bytes)} GB "
                "is below its current usage", field="quota_gb")
        t.quota_bytes = quota_bytes
        t.updated_at = utcnow()
        await log_action(s, actor, "tenant.quota", t.admin_username, tenant_id=t.id, old_bytes=old,
                         new_bytes=quota_bytes)
    return t


@dataclass(frozen=True)
class Termination:
    tenant: Tenant
    changed: bool
    domains: int = 0
    principals: int = 0
    messages: int = 0
    queued: int = 0
    freed_bytes: int = 0


async def terminate(svc: Services, reseller_id: str, ident: str, actor: Actor | None = None) -> Termination:
    """Delete all of a sub-tenant's data (see module docstring); repeating it is a no-op."""
    from mailwright.mailstore.changes import remove_blob_files, unreferenced_blobs

    async with svc.db.write() as s:
        found = await find_subtenant(s, reseller_id, ident, include_terminated=True)
        t = await _lock(s, found.id)
        assert t is not None
        if t.status == "terminated":
            return Termination(t, False)
        # Lock the principals first: a delivery racing with us then waits (its FK check on the
        # principal) and fails cleanly with a 4xx after our commit, instead of leaving a message
        # whose blob we did not see.
        pids = list((await s.execute(select(Principal.id).where(Principal.tenant_id == t.id).with_for_update()
                                     )).scalars())
        of_tenant = select(Principal.id).where(Principal.tenant_id == t.id)
        msg_rows = (await s.execute(select(Message.blob_hash, Message.size).where(
            Message.principal_id.in_(of_tenant)))).all()
        hashes = {str(h) for h, _ in msg_rows}
        queued_ids = select(QueuedMessage.id).where(QueuedMessage.tenant_id == t.id)
        q_hashes = set((await s.execute(select(QueuedMessage.blob_hash).where(
            QueuedMessage.tenant_id == t.id))).scalars())
        await s.execute(delete(QueuedRecipient).where(QueuedRecipient.queue_id.in_(queued_ids)))
        await s.execute(delete(QueuedMessage).where(QueuedMessage.tenant_id == t.id))
        await s.execute(delete(Message).where(Message.principal_id.in_(of_tenant)))
        await s.execute(delete(Mailbox).where(Mailbox.principal_id.in_(of_tenant)))
        await s.execute(delete(ApiKey).where(ApiKey.tenant_id == t.id))
        await s.execute(delete(Webhook).where(Webhook.tenant_id == t.id))
        await s.execute(delete(SendCounter).where(SendCounter.principal_id.in_(of_tenant)))
        await s.execute(delete(Principal).where(Principal.tenant_id == t.id))
        names = list((await s.execute(select(Domain.name).where(Domain.tenant_id == t.id))).scalars())
        n_domains = len(names)
        await retire_domains(s, names)
        await s.execute(delete(Domain).where(Domain.tenant_id == t.id))
        await s.execute(delete(Workspace).where(Workspace.tenant_id == t.id))
        freed = await unreferenced_blobs(s, hashes | q_hashes)
        t.status = "terminated"
        t.admin_password_hash = None
        t.updated_at = utcnow()
        result = Termination(t, True, domains=n_domains, principals=len(pids), messages=len(msg_rows),
                             queued=len(q_hashes), freed_bytes=sum(int(n) for _, n in msg_rows))
        await log_action(s, actor, "tenant.terminate", t.admin_username, tenant_id=t.id, domains=n_domains,
                     principals=len(pids), messages=len(msg_rows), freed_bytes=result.freed_bytes)
    remove_blob_files(svc, freed)
    await _announce(svc, pids, "tenant.terminated", t.id)
    return result


# --- the tenant admin's own login -------------------------------------------------------------

_DUMMY: list[str] = []


async def _dummy_hash() -> str:
    if not _DUMMY:
        _DUMMY.append(await passwords.hash_password(secrets.token_hex(16)))
    return _DUMMY[0]

@dataclass(frozen=True)
class LoginGrant:
    key: str
    key_id: str
    tenant_id: str
    tenant_name: str
    expires_at: datetime


async def admin_login(svc: Services, username: str, password: str, *, source_ip: str | None = None,
                      ttl: timedelta = LOGIN_KEY_TTL) -> LoginGrant | None:
    """Check a tenant admin's generated credentials; mint a short-lived `tk_` management key.

    None for a wrong name or password and for a suspended/terminated tenant alike (the caller
    must not tell them apart). The key expires after `ttl` and dies with the tenant.
    """
    from mailwright.directory import apikeys

    if not isinstance(username, str) or not isinstance(password, str) or not username or not password:
        return None
    if len(username) > 255 or len(password) > 1024:
        return None
    async with svc.db.read() as s:
        t = (await s.execute(select(Tenant).where(Tenant.admin_username == username.strip().lower())
                             )).scalar_one_or_none()
        active = t is not None and bool(t.admin_password_hash) and await tenant_is_active(s, t.id)
    if t is None or not active or not t.admin_password_hash:
        # Spend the same Argon2 time as a real check, so timing does not tell which names exist.
        await passwords.verify_password(await _dummy_hash(), password)
        return None
    stored, tenant_id, tenant_name = t.admin_password_hash, t.id, t.name
    if not await passwords.verify_password(stored, password):
        return None
    now = utcnow()
    expires = now + ttl
    async with svc.db.write() as s:
        # Login keys of this tenant that have expired are of no use to anyone: sweep them here.
        await s.execute(delete(ApiKey).where(ApiKey.tenant_id == tenant_id, ApiKey.created_by == "login",
                                             ApiKey.expires_at < now))
        row, key = await apikeys.create_key(s, prefix="tk_", scope="tenant", tenant_id=tenant_id,
                                            name="admin login", created_by="login", expires_at=expires)
        await audit.record(s, tenant_id, username, row.id, "tenant.login", username, source_ip)
    return LoginGrant(key=key, key_id=row.id, tenant_id=tenant_id, tenant_name=tenant_name, expires_at=expires)

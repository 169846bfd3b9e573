"""Reseller accounts: creation by the platform admin, their API keys, overview, quota sync, brand.

A reseller is a `Tenant(kind="reseller")` with a plan (free | paid), a storage pool it may hand
out to sub-tenants (`pool_bytes`, 0 = unlimited) and a sub-tenant limit (`max_tenants`, 0 =
unlimited). Its `rk_` keys (scope "reseller", tenant_id = the reseller row) are minted by the
platform admin or by the reseller itself, shown once and stored as SHA-256 (`apikeys`).

`sync_quota` recomputes every sub-tenant mailbox's `used_bytes` from the messages really stored
(sum of `Message.size`), locking the principal rows first so a delivery committing meanwhile is
counted exactly once, and reports each drift it corrected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from mailwright.directory import apikeys
from mailwright.directory.errors import AlreadyExists, Invalid, NotFound
from mailwright.directory.names import normalize_domain
from mailwright.directory.tenants import Actor, allocated_bytes, log_action
from mailwright.storage.models import ApiKey, Domain, Message, Principal, Tenant, utcnow

PLANS = ("free", "paid")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")
_COLOR = re.compile(r"^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")
BRAND_FIELDS = ("name", "logo_url", "colors", "webmail_host", "dashboard_host")


# --- reseller accounts ------------------------------------------------------------------------

async def create_reseller(session: AsyncSession, name: str, *, plan: str = "paid", pool_bytes: int = 0,
                          max_tenants: int = 0) -> Tenant:
    if not isinstance(name, str) or not _NAME.match(name):
        raise Invalid("name must be 1-128 letters, digits, '.', '_', '@' or '-'", field="name", value=name)
    if plan not in PLANS:
        raise Invalid("plan must be 'free' or 'paid'", field="plan", value=plan)
    _check_limits(plan, pool_bytes, max_tenants)
    if (await session.execute(select(Tenant.id).where(Tenant.name == name))).first() is not None:
        raise AlreadyExists(f"an account named {name!r} already exists", field="name", value=name)
    row = Tenant(name=name, kind="reseller", plan=plan, pool_bytes=pool_bytes, max_tenants=max_tenants)
    session.add(row)
    await session.flush()
    return row


def _check_limits(plan: str | None, pool_bytes: int | None, max_tenants: int | None) -> None:
    if plan is not None and plan not in PLANS:
        raise Invalid("plan must be 'free' or 'paid'", field="plan", value=plan)
    if pool_bytes is not None and (not isinstance(pool_bytes, int) or pool_bytes < 0):
        raise Invalid("pool must be >= 0 (0 = unlimited)", field="pool_gb", value=pool_bytes)
    if max_tenants is not None and (isinstance(max_tenants, bool) or not isinstance(max_tenants, int)
                                    or max_tenants < 0):
        raise Invalid("max_tenants must be an integer >= 0 (0 = unlimited)", field="max_tenants",
                      value=max_tenants)


async def get_reseller(session: AsyncSession, ident: str) -> Tenant:
    row = await session.get(Tenant, ident) if len(ident) <= 36 else None
    if row is None:
        row = (await session.execute(select(Tenant).where(Tenant.name == ident))).scalar_one_or_none()
    if row is None or row.kind != "reseller" or row.status == "terminated":
        raise NotFound(f"reseller {ident!r} not found")
    return row


async def list_resellers(session: AsyncSession) -> list[Tenant]:
    q = select(Tenant).where(Tenant.kind == "reseller", Tenant.status != "terminated").order_by(Tenant.name)
    return list((await session.execute(q)).scalars())


async def update_reseller(session: AsyncSession, ident: str, *, plan: str | None = None,
                          pool_bytes: int | None = None, max_tenants: int | None = None,
                          status: str | None = None) -> Tenant:
    _check_limits(plan, pool_bytes, max_tenants)
    if status is not None and status not in ("active", "suspended"):
        raise Invalid("status must be 'active' or 'suspended'", field="status", value=status)
    row = await get_reseller(session, ident)
    if plan is not None:
        row.plan = plan
    if pool_bytes is not None:
        row.pool_bytes = pool_bytes
    if max_tenants is not None:
        row.max_tenants = max_tenants
    if status is not None:
        row.status = status
    row.updated_at = utcnow()
    await session.flush()
    return row


# --- keys -------------------------------------------------------------------------------------

async def mint_key(session: AsyncSession, reseller_id: str, *, name: str | None = None,
                   created_by: str | None = None) -> tuple[ApiKey, str]:
    if name is not None and (not isinstance(name, str) or len(name) > 255):
        raise Invalid("name must be a string of at most 255 characters", field="name", value=name)
    return await apikeys.create_key(session, prefix="rk_", scope="reseller", tenant_id=reseller_id, name=name,
                                    created_by=created_by)


async def list_keys(session: AsyncSession, reseller_id: str) -> list[ApiKey]:
    q = select(ApiKey).where(ApiKey.tenant_id == reseller_id, ApiKey.scope == "reseller").order_by(
        ApiKey.created_at, ApiKey.id)
    return list((await session.execute(q)).scalars())


async def revoke_key(session: AsyncSession, reseller_id: str, key_id: str) -> tuple[ApiKey, bool]:
    """(key, changed): revoking a revoked key is a no-op; another reseller's key is not found."""
    row = await session.get(ApiKey, key_id) if len(key_id) <= 36 else None
    if row is None or row.tenant_id != reseller_id or row.scope != "reseller":
        raise NotFound(f"API key {key_id!r} not found")
    if row.revoked_at is not None:
        return row, False
    row.revoked_at = utcnow()
    await session.flush()
    return row, True


# --- usage ------------------------------------------------------------------------------------

@dataclass
class TenantUsage:
    email_count: int = 0  # email accounts (individual principals)
    alias_count: int = 0  # lists: aliases and forwarders
    domain_count: int = 0
    message_count: int = 0
    used_bytes: int = 0


async def usage_by_tenant(session: AsyncSession, tenant_ids: list[str]) -> dict[str, TenantUsage]:
    """Counts and storage per tenant, in four grouped queries whatever the number of tenants."""
    out = {t: TenantUsage() for t in tenant_ids}
    if not tenant_ids:
        return out
    q = select(Principal.tenant_id, Principal.type, func.count(), func.coalesce(func.sum(Principal.used_bytes), 0)
               ).where(Principal.tenant_id.in_(tenant_ids)).group_by(Principal.tenant_id, Principal.type)
    for tid, ptype, n, used in (await session.execute(q)).all():
        u = out[str(tid)]
        if ptype == "individual":
            u.email_count += int(n)
        else:
            u.alias_count += int(n)
        u.used_bytes += int(used)
    q2 = select(Domain.tenant_id, func.count()).where(Domain.tenant_id.in_(tenant_ids)).group_by(Domain.tenant_id)
    for tid, n in (await session.execute(q2)).all():
        out[str(tid)].domain_count = int(n)
    q3 = select(Principal.tenant_id, func.count()).join(Message, Message.principal_id == Principal.id).where(
        Principal.tenant_id.in_(tenant_ids)).group_by(Principal.tenant_id)
    for tid, n in (await session.execute(q3)).all():
        out[str(tid)].message_count = int(n)
    return out


@dataclass
class Overview:
    reseller: Tenant
    allocated_bytes: int
    used_bytes: int
    tenants: dict[str, int] = field(default_factory=dict)


async def overview(session: AsyncSession, reseller_id: str) -> Overview:
    r = await session.get(Tenant, reseller_id)
    if r is None:
        raise NotFound("reseller not found")
    by_status = {"active": 0, "suspended": 0, "terminated": 0}
    q = select(Tenant.status, func.count()).where(Tenant.parent_id == reseller_id).group_by(Tenant.status)
    for status, n in (await session.execute(q)).all():
        by_status[status] = int(n)
    live = select(Tenant.id).where(Tenant.parent_id == reseller_id, Tenant.status != "terminated")
    used = (await session.execute(select(func.coalesce(func.sum(Principal.used_bytes), 0)).where(
        Principal.tenant_id.in_(live)))).scalar_one()
    return Overview(r, await allocated_bytes(session, reseller_id), int(used), by_status)


@dataclass(frozen=True)
class Drift:
    tenant_id: str
    tenant_username: str | None
    principal: str
    recorded_bytes: int
    actual_bytes: int


async def sync_quota(session: AsyncSession, reseller_id: str, actor: Actor | None = None
                     ) -> tuple[int, list[Drift]]:
    """Recompute used_bytes of every live sub-tenant mailbox; (principals checked, drifts fixed)."""
    live = select(Tenant.id).where(Tenant.parent_id == reseller_id, Tenant.status != "terminated")
    rows = (await session.execute(
        select(Principal.id, Principal.name, Principal.tenant_id, Principal.used_bytes)
        .where(Principal.tenant_id.in_(live)).order_by(Principal.id).with_for_update()
    )).all()
    if not rows:
        await log_action(session, actor, "reseller.sync_quota", None, principals=0, corrected=0)
        return 0, []
    ids = [r[0] for r in rows]
    actual = dict((await session.execute(
        select(Message.principal_id, func.coalesce(func.sum(Message.size), 0))
        .where(Message.principal_id.in_(ids)).group_by(Message.principal_id)
    )).all())
    names: dict[str | None, str | None] = dict((await session.execute(
        select(Tenant.id, Tenant.admin_username).where(Tenant.id.in_({r[2] for r in rows}))
    )).all())
    drifts: list[Drift] = []
    for pid, pname, tid, recorded in rows:
        real = int(actual.get(pid, 0))
        if int(recorded) != real:
            await session.execute(update(Principal).where(Principal.id == pid).values(used_bytes=real))
            drifts.append(Drift(str(tid), names.get(tid), pname, int(recorded), real))
    await log_action(session, actor, "reseller.sync_quota", None, principals=len(rows), corrected=len(drifts))
    return len(rows), drifts


# --- branding ---------------------------------------------------------------------------------

def _check_host(value: object, name: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise Invalid(f"{name} must be a host name", field=name, value=value)
    return normalize_domain(value, field=name)


def validate_branding(body: object) -> dict[str, Any]:
    """The whole brand (PUT replaces it); unknown fields are refused so typos do not vanish."""
    if not isinstance(body, dict):
        raise Invalid("branding must be a JSON object")
    unknown = sorted(set(body) - set(BRAND_FIELDS))
    if unknown:
        raise Invalid(f"unknown branding field(s): {', '.join(unknown)}", field=unknown[0])
    name = body.get("name")
    if name is not None and (not isinstance(name, str) or len(name) > 255):
        raise Invalid("name must be a string of at most 255 characters", field="name", value=name)
    logo = body.get("logo_url")
    if logo is not None and logo != "":
        parts = urlsplit(logo) if isinstance(logo, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc or len(logo) > 2048:
            raise Invalid("logo_url must be an http(s) URL", field="logo_url", value=logo)
    colors = body.get("colors") or {}
    if not isinstance(colors, dict) or set(colors) - {"primary", "secondary"}:
        raise Invalid("colors must be an object with 'primary' and/or 'secondary'", field="colors")
    for k, v in colors.items():
        if v is not None and (not isinstance(v, str) or not _COLOR.match(v)):
            raise Invalid(f"colors.{k} must be a #RGB or #RRGGBB colour", field=f"colors.{k}", value=v)
    return {
        "name": name or None,
        "logo_url": logo or None,
        "colors": {"primary": colors.get("primary"), "secondary": colors.get("secondary")},
        "webmail_host": _check_host(body.get("webmail_host"), "webmail_host"),
        "dashboard_host": _check_host(body.get("dashboard_host"), "dashboard_host"),
    }


def branding_of(reseller: Tenant) -> dict[str, Any]:
    b = dict(reseller.branding or {})
    return {
        "name": b.get("name"),
        "logo_url": b.get("logo_url"),
        "colors": dict(b.get("colors") or {"primary": None, "secondary": None}),
        "webmail_host": b.get("webmail_host"),
        "dashboard_host": b.get("dashboard_host"),
    }


async def set_branding(session: AsyncSession, reseller_id: str, body: object, actor: Actor | None = None
                       ) -> dict[str, Any]:
    brand = validate_branding(body)
    r = await session.get(Tenant, reseller_id)
    if r is None:
        raise NotFound("reseller not found")
    r.branding = brand
    r.updated_at = utcnow()
    await log_action(session, actor, "reseller.branding", r.name, **brand)
    return brand

"""API keys: random, shown once, stored as SHA-256, looked up by hash.

The prefix tells the tier and is kept in clear: `sa_` platform, `rk_` reseller, `tk_` tenant
(the management dialect's bearer token and the agent dialect's tenant master), `wk_` workspace,
`ak_` one inbox, `mxm_` per-domain manager token, `tm_pro_` self-service Pro token.
`MAILWRIGHT_ADMIN_TOKEN`, when set, is a platform key that lives only in the environment.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from mailwright.directory.tenants import tenant_is_active
from mailwright.storage.db import Database
from mailwright.storage.models import ApiKey, utcnow

SCOPE_BY_PREFIX = {
    "sa_": "platform",
    "rk_": "reseller",
    "tk_": "tenant",
    "wk_": "workspace",
    "ak_": "inbox",
    "mxm_": "domain",
    "tm_pro_": "tenant",
}


@dataclass(frozen=True)
class KeyContext:
    """Who is calling: the resolved scope of a presented key."""

    key_id: str | None
    scope: str  # platform | reseller | tenant | workspace | inbox | domain
    prefix: str
    tenant_id: str | None = None
    workspace_id: str | None = None
    principal_id: str | None = None
    permissions: dict[str, Any] = field(default_factory=dict)

    @property
    def is_platform(self) -> bool:
        return self.scope == "platform"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def mint(prefix: str) -> tuple[str, str]:
    """A new key and its stored hash."""
    key = prefix + secrets.token_urlsafe(32)
    return key, hash_key(key)


async def create_key(
    session: AsyncSession,
    *,
    prefix: str,
    scope: str | None = None,
    tenant_id: str | None = None,
    workspace_id: str | None = None,
    principal_id: str | None = None,
    permissions: dict[str, Any] | None = None,
    name: str | None = None,
    created_by: str | None = None,
    expires_at: datetime | None = None,
) -> tuple[ApiKey, str]:
    """Create a key; returns the row and the plaintext, which is never stored or shown again."""
    key, digest = mint(prefix)
    row = ApiKey(
        key_hash=digest,
        prefix=prefix,
        hint=key[: len(prefix) + 6],
        scope=scope or SCOPE_BY_PREFIX.get(prefix, "tenant"),
        tenant_id=tenant_id,
        workspace_id=workspace_id,
        principal_id=principal_id,
        permissions=permissions,
        name=name,
        created_by=created_by,
        expires_at=expires_at,
    )
    session.add(row)
    await session.flush()
    return row, key


async def authenticate(db: Database, presented: str, admin_token: str | None) -> KeyContext | None:
    """Resolve a presented key; None when unknown, revoked or expired."""
    if not presented:
        return None
    if admin_token and hmac.compare_digest(presented.encode(), admin_token.encode()):
        return KeyContext(key_id=None, scope="platform", prefix="env")
    digest = hash_key(presented)
    async with db.read() as s:
        row = (await s.execute(select(ApiKey).where(ApiKey.key_hash == digest))).scalar_one_or_none()
        # A suspended (or terminated) tenant's keys, and those under a suspended reseller, stop
        # working at once: read from the database on every use, so every process agrees.
        if row is not None and row.tenant_id is not None and not await tenant_is_active(s, row.tenant_id):
            return None
    # The lookup is by hash, so timing reveals nothing about the key; compare anyway.
    if row is None or not hmac.compare_digest(row.key_hash, digest):
        return None
    now = utcnow()
    if row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now):
        return None
    if row.last_used_at is None or (now - row.last_used_at).total_seconds() > 60:
        async with db.write() as s:
            await s.execute(update(ApiKey).where(ApiKey.id == row.id).values(last_used_at=now))
    return KeyContext(
        key_id=row.id,
        scope=row.scope,
        prefix=row.prefix,
        tenant_id=row.tenant_id,
        workspace_id=row.workspace_id,
        principal_id=row.principal_id,
        permissions=dict(row.permissions or {}),
    )


async def platform_key_exists(session: AsyncSession) -> bool:
    q = select(ApiKey.id).where(ApiKey.scope == "platform", ApiKey.revoked_at.is_(None)).limit(1)
    return (await session.execute(q)).first() is not None

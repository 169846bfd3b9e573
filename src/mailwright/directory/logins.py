"""Mail logins (SMTP AUTH, IMAP, POP3): password check plus the tenant-status gate."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from mailwright.directory import passwords
from mailwright.directory.principals import find_principal
from mailwright.directory.tenants import tenant_is_active
from mailwright.storage.db import Database
from mailwright.storage.models import Credential


@dataclass(frozen=True)
class Account:
    principal_id: str
    tenant_id: str | None
    name: str


async def login(db: Database, username: str, password: str) -> Account | None:
    """The account, or None for a wrong name/password, a list, or a suspended tenant.

    The caller cannot tell which (and must not: it would enumerate accounts).
    """
    if not username or not password or len(username) > 320 or len(password) > 1024:
        return None
    async with db.read() as s:
        p = await find_principal(s, username)
        if p is None or p.type != "individual" or p.status != "active":
            return None
        if not await tenant_is_active(s, p.tenant_id):
            return None
        q = select(Credential.secret_hash).where(Credential.principal_id == p.id)
        hashes = list((await s.execute(q)).scalars())
    for h in hashes:
        if await passwords.verify_password(h, password):
            return Account(principal_id=p.id, tenant_id=p.tenant_id, name=p.name)
    return None


async def account_is_active(db: Database, principal_id: str) -> bool:
    """Re-checked by long-lived sessions so a suspension ends them promptly."""
    from mailwright.storage.models import Principal

    async with db.read() as s:
        p = await s.get(Principal, principal_id)
        return p is not None and p.status == "active" and await tenant_is_active(s, p.tenant_id)

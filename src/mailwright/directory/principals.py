"""Principals: individuals (mailboxes with logins) and lists (aliases and forwarders).

Rules enforced here, once, for every dialect: an address belongs to one principal platform-wide;
an address must be in a domain of the principal's own tenant; passwords meet the policy and are
stored only as Argon2id hashes (hashed before the write transaction opens, so the SQLite writer
lock is never held for a hash).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from mailwright.directory import passwords
from mailwright.directory.errors import AlreadyExists, Invalid, MissingField, NotFound
from mailwright.directory.names import normalize_address, split_address
from mailwright.storage.db import Database
from mailwright.storage.models import Address, Credential, Domain, ListMember, Principal

PRINCIPAL_TYPES = ("individual", "list")


@dataclass
class PrincipalSpec:
    """What a caller wants a principal to look like; None fields are left unchanged on update."""

    type: str | None = None
    name: str | None = None
    secrets: list[str] | None = None
    emails: list[str] | None = None
    members: list[str] | None = None
    description: str | None = None
    display_name: str | None = None
    quota: int | None = None
    role: str | None = None
    workspace_id: str | None = None


def check_password_policy(password: object, min_length: int) -> str:
    if not isinstance(password, str):
        raise Invalid("password must be a string", field="secrets")
    if len(password) < min_length:
        raise Invalid(f"password must be at least {min_length} characters", field="secrets")
    if len(password) > 1024:
        raise Invalid("password is too long", field="secrets")
    return password


async def hash_secrets(secrets: Iterable[object], min_length: int) -> list[str]:
    checked = [check_password_policy(p, min_length) for p in secrets]
    return [await passwords.hash_password(p) for p in checked]


async def _domain_for(session: AsyncSession, address: str, tenant_id: str | None, field: str) -> Domain:
    _, domain_name = split_address(address)
    dom = (await session.execute(select(Domain).where(Domain.name == domain_name))).scalar_one_or_none()
    if dom is None or dom.tenant_id != tenant_id:
        raise Invalid(f"domain {domain_name} is not a domain of this tenant", field=field, value=address)
    return dom


async def _claim_addresses(
    session: AsyncSession, principal: Principal, addresses: list[str], *, primary: str | None
) -> None:
    for addr in addresses:
        owner = (await session.execute(select(Address).where(Address.address == addr))).scalar_one_or_none()
        if owner is not None:
            if owner.principal_id == principal.id:
                continue
            raise AlreadyExists(f"address {addr} is already in use", field="emails", value=addr)
        dom = await _domain_for(session, addr, principal.tenant_id, "emails")
        if principal.domain_id is None:
            principal.domain_id = dom.id
        session.add(Address(address=addr, principal_id=principal.id, domain_id=dom.id, is_primary=addr == primary))
    await session.flush()


async def create_principal(
    db: Database, tenant_id: str | None, spec: PrincipalSpec, *, password_min_length: int = 8
) -> Principal:
    if spec.type not in PRINCIPAL_TYPES:
        if spec.type is None:
            raise MissingField("field 'type' is required", field="type")
        raise Invalid(f"unsupported principal type {spec.type!r}", field="type", value=spec.type)
    if not spec.name or not isinstance(spec.name, str):
        raise MissingField("field 'name' is required", field="name")
    name = spec.name.strip().lower()
    emails = [normalize_address(e) for e in (spec.emails or [])]
    if "@" in name:
        name = normalize_address(name, field="name")
        if name not in emails:
            emails.insert(0, name)
    members = [normalize_address(m, field="members") for m in (spec.members or [])]
    if spec.type == "list" and not emails:
        raise Invalid("a list needs an address: name it user@domain or give emails", field="emails")
    hashes = await hash_secrets(spec.secrets or [], password_min_length)
    if spec.quota is not None and (not isinstance(spec.quota, int) or spec.quota < 0):
        raise Invalid("quota must be a non-negative integer (bytes)", field="quota", value=spec.quota)

    from mailwright.mailstore import mailboxes  # the mailstore owns mailbox creation

    async with db.write() as s:
        if (await s.execute(select(Principal.id).where(Principal.name == name))).first():
            raise AlreadyExists(f"principal {name} already exists", field="name", value=name)
        p = Principal(
            tenant_id=tenant_id,
            type=spec.type,
            name=name,
            description=spec.description,
            display_name=spec.display_name,
            quota_bytes=spec.quota or 0,
            role=spec.role or "user",
            workspace_id=spec.workspace_id,
        )
        s.add(p)
        await s.flush()
        await _claim_addresses(s, p, emails, primary=emails[0] if emails else None)
        for h in hashes:
            s.add(Credential(principal_id=p.id, secret_hash=h))
        for m in dict.fromkeys(members):
            s.add(ListMember(list_id=p.id, member=m))
        if p.type == "individual":
            await mailboxes.ensure_defaults(s, p.id)
        await s.flush()
    return p


async def find_principal(session: AsyncSession, name_or_address: str) -> Principal | None:
    key = name_or_address.strip().lower()
    p = (await session.execute(select(Principal).where(Principal.name == key))).scalar_one_or_none()
    if p is not None:
        return p
    q = select(Principal).join(Address, Address.principal_id == Principal.id).where(Address.address == key)
    return (await session.execute(q)).scalar_one_or_none()


async def get_principal(session: AsyncSession, name: str, tenant_id: str | None) -> Principal:
    p = await find_principal(session, name)
    if p is None or (tenant_id is not None and p.tenant_id != tenant_id):
        raise NotFound(f"principal {name!r} not found", field="name", value=name)
    return p


async def addresses_of(session: AsyncSession, principal_id: str) -> list[str]:
    q = select(Address.address).where(Address.principal_id == principal_id).order_by(
        Address.is_primary.desc(), Address.id
    )
    return list((await session.execute(q)).scalars())


async def members_of(session: AsyncSession, list_id: str) -> list[str]:
    q = select(ListMember.member).where(ListMember.list_id == list_id).order_by(ListMember.id)
    return list((await session.execute(q)).scalars())


async def list_principals(
    session: AsyncSession, tenant_id: str | None, types: list[str], *, filter_text: str | None = None,
    offset: int = 0, limit: int | None = None,
) -> tuple[list[Principal], int]:
    q = select(Principal).where(Principal.type.in_(types))
    if tenant_id is not None:
        q = q.where(Principal.tenant_id == tenant_id)
    if filter_text:
        like = f"%{filter_text.lower()}%"
        q = q.where(or_(Principal.name.like(like), Principal.description.like(like)))
    total = (await session.execute(select(func.count()).select_from(q.subquery()))).scalar_one()
    q = q.order_by(Principal.name).offset(offset)
    if limit:
        q = q.limit(limit)
    return list((await session.execute(q)).scalars()), int(total)


async def set_secrets(session: AsyncSession, principal_id: str, hashes: list[str]) -> None:
    """Replace every password: the old ones stop working at once (and miss the verify cache)."""
    await session.execute(delete(Credential).where(Credential.principal_id == principal_id))
    for h in hashes:
        session.add(Credential(principal_id=principal_id, secret_hash=h))
    await session.flush()

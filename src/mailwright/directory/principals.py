"""Principals: individuals (mailboxes with logins) and lists (aliases and forwarders).

Rules enforced here, once, for every dialect: an address belongs to one principal platform-wide;
an address must be in a domain of the principal's own tenant; a new individual (mailbox) must fit
the tenant's `max_mailboxes` (`directory.limits`; lists are not mailboxes); passwords meet the policy and are
stored only as Argon2id hashes (hashed before the write transaction opens, so the SQLite writer
lock is never held for a hash). A secret that already is an Argon2id PHC string is stored as
given, as Stalwart does, so accounts can be migrated without knowing their passwords.

List members (Stalwart/Mailbux semantics): a member in a domain this platform hosts must be an
existing address of the list's own tenant (it makes the list an alias); a member anywhere else
is an external forward target (a forwarder). One list may mix both. Members are not checked
again later: deleting an account leaves the alias entry (like a Postfix virtual map), which then
simply routes nowhere until the address exists again.

Updates are a list of `Change(action, field, value)` (Stalwart's PATCH form; the object form is
translated into `set` changes by the dialect). Password changes replace the stored hashes in
the same transaction, so the old password stops working on the next login (the verify cache is
keyed by the stored hash). Deleting a principal deletes its mail, refunds quota and unlinks
blobs no other message uses (after the commit).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from argon2 import extract_parameters
from argon2.exceptions import InvalidHashError
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from mailwright.directory import limits, passwords
from mailwright.directory.errors import AlreadyExists, Invalid, MissingField, NotFound
from mailwright.directory.names import normalize_address, split_address
from mailwright.storage.db import Database
from mailwright.storage.models import Address, Credential, Domain, ListMember, Message, Principal, new_id

if TYPE_CHECKING:
    from mailwright.directory.tenants import Actor
    from mailwright.services import Services

PRINCIPAL_TYPES = ("individual", "list")
MAX_QUOTA = 2**63 - 1  # a BIGINT column


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


def is_argon2id_hash(secret: object) -> bool:
    """A complete Argon2id PHC string: stored as given (migrations from Stalwart and other
    servers hand over hashes, never passwords); the policy cannot apply to an unknown password."""
    if not isinstance(secret, str) or not secret.startswith("$argon2id$"):
        return False
    try:
        extract_parameters(secret)
    except InvalidHashError:
        return False
    return True


ROLES = ("user", "admin", "tenant-admin")


def check_role(role: object) -> str:
    if role not in ROLES:
        raise Invalid(f"unknown role {role!r}: use one of {', '.join(ROLES)}", field="roles")
    return str(role)


def check_name(name: str) -> str:
    """A login name: an address (normalised) or a plain name of printable characters, no spaces."""
    raw = name.strip()
    if "@" in raw:
        return normalize_address(raw, field="name")
    if not raw or len(raw) > 255 or not raw.isprintable() or any(c.isspace() for c in raw):
        raise Invalid("name must be an address or 1-255 printable characters without spaces", field="name")
    return raw.lower()


async def hash_secrets(secrets: Iterable[object], min_length: int) -> list[str]:
    out: list[str] = []
    for p in list(secrets):
        if is_argon2id_hash(p):
            out.append(str(p))
        else:
            out.append(check_password_policy(p, min_length))
    return [p if is_argon2id_hash(p) else await passwords.hash_password(p) for p in out]


async def _domain_for(session: AsyncSession, address: str, tenant_id: str | None, field: str) -> Domain:
    _, domain_name = split_address(address)
    for obj in session.identity_map.values():  # already loaded in this transaction: no round trip
        if isinstance(obj, Domain) and obj.name == domain_name:
            dom: Domain | None = obj
            break
    else:
        dom = (await session.execute(select(Domain).where(Domain.name == domain_name))).scalar_one_or_none()
    if dom is None or dom.tenant_id != tenant_id:
        raise Invalid(f"domain {domain_name} is not a domain of this tenant", field=field, value=address)
    return dom


async def _claim_addresses(
    session: AsyncSession, principal: Principal, addresses: list[str], *, primary: str | None
) -> None:
    for addr in addresses:
        # The domain check comes first: another tenant's address answers like any foreign one,
        # so whether it exists does not leak.
        dom = await _domain_for(session, addr, principal.tenant_id, "emails")
        owner = (await session.execute(select(Address).where(Address.address == addr))).scalar_one_or_none()
        if owner is not None:
            if owner.principal_id == principal.id:
                continue
            raise AlreadyExists(f"address {addr} is already in use", field="emails", value=addr)
        if principal.domain_id is None:
            principal.domain_id = dom.id
        session.add(Address(address=addr, principal_id=principal.id, domain_id=dom.id, is_primary=addr == primary))
    await session.flush()


async def create_principal(
    db: Database, tenant_id: str | None, spec: PrincipalSpec, *, password_min_length: int = 8,
    actor: Actor | None = None,
) -> Principal:
    if spec.type not in PRINCIPAL_TYPES:
        if spec.type is None:
            raise MissingField("field 'type' is required", field="type")
        raise Invalid(f"unsupported principal type {spec.type!r}", field="type", value=spec.type)
    if not spec.name or not isinstance(spec.name, str):
        raise MissingField("field 'name' is required", field="name")
    name = check_name(spec.name)
    role = check_role(spec.role or "user")
    emails = [normalize_address(e) for e in (spec.emails or [])]
    if "@" in name:
        name = normalize_address(name, field="name")
        if name not in emails:
            emails.insert(0, name)
    members = [normalize_address(m, field="members") for m in (spec.members or [])]
    if spec.type == "individual" and members:
        raise Invalid("an individual has no members; create a list", field="members")
    if spec.type == "list" and spec.secrets:
        raise Invalid("a list has no password (it cannot log in)", field="secrets")
    if spec.type == "list" and not emails:
        raise Invalid("a list needs an address: name it user@domain or give emails", field="emails")
    hashes = await hash_secrets(spec.secrets or [], password_min_length)
    if spec.quota is not None and (isinstance(spec.quota, bool) or not isinstance(spec.quota, int)
                                   or not 0 <= spec.quota <= MAX_QUOTA):
        raise Invalid("quota must be a non-negative integer (bytes)", field="quota", value=spec.quota)

    from mailwright.mailstore import mailboxes  # the mailstore owns mailbox creation

    emails = list(dict.fromkeys(emails))
    try:
        async with db.write() as s:
            # Few round trips (this is the bulk-provisioning path): the domains of all addresses in
            # one query, foreign ones refused first (400) so a taken foreign name does not leak
            # (409); then the name and every address checked in one query; then one flush.
            wanted = {split_address(a)[1] for a in emails}
            doms = {d.name: d for d in (await s.execute(select(Domain).where(Domain.name.in_(wanted)))).scalars()}
            for addr in emails:
                dom = doms.get(split_address(addr)[1])
                if dom is None or dom.tenant_id != tenant_id:
                    raise Invalid(f"domain {split_address(addr)[1]} is not a domain of this tenant", field="emails",
                                  value=addr)
            clash = (await s.execute(
                select(Principal.name).where(Principal.name == name).union_all(
                    select(Address.address).where(Address.address.in_(emails)))
            )).scalars().first()
            if clash is not None:
                field = "name" if clash == name else "emails"
                raise AlreadyExists(f"{clash} is already in use", field=field, value=clash)
            if spec.type == "individual":
                await limits.check_room(s, tenant_id, mailboxes=1)
            p = Principal(
                id=new_id(),
                tenant_id=tenant_id,
                type=spec.type,
                name=name,
                description=spec.description,
                display_name=spec.display_name,
                quota_bytes=spec.quota or 0,
                role=role,
                workspace_id=spec.workspace_id,
                domain_id=doms[split_address(emails[0])[1]].id if emails else None,
            )
            s.add(p)
            await s.flush()  # no ORM relationships: the principal row must exist before rows referencing it
            s.add_all([Address(address=a, principal_id=p.id, domain_id=doms[split_address(a)[1]].id,
                               is_primary=i == 0) for i, a in enumerate(emails)])
            s.add_all([Credential(principal_id=p.id, secret_hash=h) for h in hashes])
            for m in dict.fromkeys(members):
                await _check_member(s, m, tenant_id)
                s.add(ListMember(list_id=p.id, member=m))
            if p.type == "individual":
                await mailboxes.ensure_defaults(s, p.id)
            await s.flush()
            await _log(s, actor, "principal.create", name, type=p.type)
    except IntegrityError:  # a concurrent create won the race (PostgreSQL; SQLite writers are serialised)
        raise AlreadyExists(f"principal {name} or one of its addresses already exists", field="name",
                            value=name) from None
    return p


async def find_principal(session: AsyncSession, name_or_address: str) -> Principal | None:
    key = name_or_address.strip().lower()
    if not key or "\x00" in key or len(key) > 320:  # no such name can exist (and PostgreSQL refuses NUL)
        return None
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


async def _check_member(session: AsyncSession, member: str, tenant_id: str | None) -> None:
    """A member in a hosted domain must be an existing address of the same tenant (an alias);
    anything else is an external forward target."""
    _, domain_name = split_address(member)
    dom = (await session.execute(select(Domain).where(Domain.name == domain_name))).scalar_one_or_none()
    if dom is None or (not dom.verified and dom.verify_token is not None):  # pending claim: not hosted
        return
    if dom.tenant_id != tenant_id:
        raise Invalid(f"member {member} is in a domain of another tenant", field="members", value=member)
    if (await session.execute(select(Address.id).where(Address.address == member))).first() is None:
        raise Invalid(f"member {member} does not exist", field="members", value=member)


@dataclass(frozen=True)
class Change:
    """One Stalwart-style change: action set | addItem | removeItem on a field."""

    action: str
    field: str
    value: object


UPDATABLE_FIELDS = ("name", "secrets", "emails", "members", "description", "quota", "roles")
ACTIONS = ("set", "addItem", "removeItem")
_LIST_FIELDS = ("secrets", "emails", "members", "roles")


def _str_list(value: object, field: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise Invalid(f"field {field!r} must be a list of strings", field=field)
    return list(value)


def check_changes(changes: list[Change]) -> None:
    for c in changes:
        if c.action not in ACTIONS:
            raise Invalid(f"unknown action {c.action!r}: use set, addItem or removeItem", field="action",
                          value=str(c.action))
        if c.field not in UPDATABLE_FIELDS:
            raise Invalid(f"field {c.field!r} cannot be changed", field=c.field)
        if c.action != "set" and c.field not in _LIST_FIELDS:
            raise Invalid(f"field {c.field!r} is not a list: use set", field=c.field)


async def _set_primary(session: AsyncSession, principal: Principal) -> None:
    rows = list((await session.execute(
        select(Address).where(Address.principal_id == principal.id).order_by(Address.is_primary.desc(), Address.id)
    )).scalars())
    for i, a in enumerate(rows):
        a.is_primary = i == 0
    principal.domain_id = rows[0].domain_id if rows else principal.domain_id
    await session.flush()


async def update_principal(
    db: Database, tenant_id: str | None, name: str, changes: list[Change], *, password_min_length: int = 8,
    actor: Actor | None = None,
) -> Principal:
    """Apply changes atomically (all or none). Passwords are hashed before the transaction."""
    check_changes(changes)
    hashed: dict[int, list[str]] = {}
    for i, c in enumerate(changes):
        if c.field == "secrets" and c.action in ("set", "addItem"):
            hashed[i] = await hash_secrets(_str_list(c.value, "secrets"), password_min_length)
    try:
        async with db.write() as s:
            p = await get_principal(s, name, tenant_id)
            for i, c in enumerate(changes):
                await _apply(s, p, c, hashed.get(i))
            await s.flush()
            # Which fields changed, never their values (secrets must not reach the log).
            await _log(s, actor, "principal.update", p.name, changes=[f"{c.action}:{c.field}" for c in changes])
    except IntegrityError:  # a concurrent change claimed the same address or name first
        raise AlreadyExists("an address or name in this change is already in use", field="emails") from None
    return p


async def _apply(s: AsyncSession, p: Principal, c: Change, hashes: list[str] | None) -> None:
    if c.field == "description":
        if c.value is not None and not isinstance(c.value, str):
            raise Invalid("description must be a string", field="description")
        p.description = c.value
    elif c.field == "quota":
        if isinstance(c.value, bool) or not isinstance(c.value, int) or not 0 <= c.value <= MAX_QUOTA:
            raise Invalid("quota must be a non-negative integer (bytes)", field="quota")
        p.quota_bytes = c.value
    elif c.field == "name":
        if not isinstance(c.value, str) or not c.value.strip():
            raise Invalid("name must be a non-empty string", field="name")
        new = check_name(c.value)
        if new != p.name:
            if (await s.execute(select(Principal.id).where(Principal.name == new))).first():
                raise AlreadyExists(f"principal {new} already exists", field="name", value=new)
            p.name = new
    elif c.field == "roles":
        roles = [check_role(r) for r in _str_list(c.value, "roles")]
        if c.action == "set" and roles:
            p.role = roles[0]
        elif c.action == "addItem" and roles:
            p.role = roles[0]
        elif c.action == "removeItem" and p.role in roles:
            p.role = "user"
    elif c.field == "secrets":
        if p.type != "individual":
            raise Invalid("a list has no password (it cannot log in)", field="secrets")
        await _change_secrets(s, p, c, hashes or [])
    elif c.field == "emails":
        await _change_emails(s, p, c)
    elif c.field == "members":
        await _change_members(s, p, c)


async def _change_secrets(s: AsyncSession, p: Principal, c: Change, hashes: list[str]) -> None:
    if c.action == "set":
        await set_secrets(s, p.id, hashes)
    elif c.action == "addItem":
        for h in hashes:
            s.add(Credential(principal_id=p.id, secret_hash=h))
    else:
        wanted = _str_list(c.value, "secrets")
        rows = list((await s.execute(select(Credential).where(Credential.principal_id == p.id))).scalars())
        for row in rows:
            for pw in wanted:
                if await passwords.verify_password(row.secret_hash, pw):
                    await s.delete(row)
                    break
    await s.flush()


async def _change_emails(s: AsyncSession, p: Principal, c: Change) -> None:
    given = [normalize_address(e, field="emails") for e in _str_list(c.value, "emails")]
    current = await addresses_of(s, p.id)
    if c.action == "set":
        drop = [a for a in current if a not in given]
        add = [a for a in given if a not in current]
    elif c.action == "addItem":
        drop, add = [], [a for a in given if a not in current]
    else:
        drop, add = [a for a in given if a in current], []
    if drop:
        await s.execute(delete(Address).where(Address.principal_id == p.id, Address.address.in_(drop)))
    await _claim_addresses(s, p, list(dict.fromkeys(add)), primary=None)
    if p.type == "list" and not await addresses_of(s, p.id):
        raise Invalid("a list needs at least one address", field="emails")
    await _set_primary(s, p)


async def _change_members(s: AsyncSession, p: Principal, c: Change) -> None:
    if p.type != "list":
        raise Invalid("only a list has members", field="members")
    given = list(dict.fromkeys(normalize_address(m, field="members") for m in _str_list(c.value, "members")))
    current = await members_of(s, p.id)
    if c.action == "set":
        drop, add = [m for m in current if m not in given], [m for m in given if m not in current]
    elif c.action == "addItem":
        drop, add = [], [m for m in given if m not in current]
    else:
        drop, add = [m for m in given if m in current], []
    if drop:
        await s.execute(delete(ListMember).where(ListMember.list_id == p.id, ListMember.member.in_(drop)))
    for m in add:
        await _check_member(s, m, p.tenant_id)
        s.add(ListMember(list_id=p.id, member=m))
    await s.flush()


async def describe(session: AsyncSession, ids: list[str]) -> dict[str, tuple[list[str], list[str]]]:
    """Addresses and members of many principals in two queries: {id: (emails, members)}."""
    out: dict[str, tuple[list[str], list[str]]] = {i: ([], []) for i in ids}
    for chunk in _chunks(ids):
        q = select(Address.principal_id, Address.address).where(Address.principal_id.in_(chunk)).order_by(
            Address.is_primary.desc(), Address.id)
        for pid, addr in (await session.execute(q)).all():
            out[pid][0].append(addr)
        q2 = select(ListMember.list_id, ListMember.member).where(ListMember.list_id.in_(chunk)).order_by(
            ListMember.id)
        for lid, member in (await session.execute(q2)).all():
            out[lid][1].append(member)
    return out


def _chunks(items: list[str], size: int = 500) -> list[list[str]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


async def delete_principal_rows(session: AsyncSession, principal: Principal) -> list[str]:
    """Delete a principal and its mail in the caller's transaction; returns blob hashes to unlink
    after the commit (with `mailstore.changes.remove_blob_files`)."""
    from mailwright.mailstore.changes import delete_messages

    freed: list[str] = []
    ids = list((await session.execute(select(Message.id).where(Message.principal_id == principal.id))).scalars())
    for i in range(0, len(ids), 1000):
        freed += await delete_messages(session, principal.id, ids[i:i + 1000])
    await session.execute(update(Domain).where(Domain.catch_all_principal_id == principal.id).values(
        catch_all_principal_id=None))
    await session.execute(delete(Principal).where(Principal.id == principal.id))
    return freed


async def _log(session: AsyncSession, actor: Actor | None, action: str, target: str, **details: object) -> None:
    if actor is not None:
        from mailwright.directory.tenants import log_action

        await log_action(session, actor, action, target, **details)


async def delete_principal(svc: Services, tenant_id: str | None, name: str, *, actor: Actor | None = None) -> None:
    """Delete an account or list: addresses, credentials, mailboxes, mail (quota and blobs freed)."""
    from mailwright.mailstore.changes import remove_blob_files

    async with svc.db.write() as s:
        p = await get_principal(s, name, tenant_id)
        freed = await delete_principal_rows(s, p)
        await _log(s, actor, "principal.delete", p.name, type=p.type)
    remove_blob_files(svc, freed)

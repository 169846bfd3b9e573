"""Agent inboxes: an inbox is an individual principal that belongs to a workspace.

Creation rules (myagentmail dialect, enforced here for any caller):
- username: lowercase letters, digits and `.-_` (input is lowercased first; no leading,
  trailing or doubled dot, at most 64 characters); generated from the tenant name when absent.
- domain: the given one must be a system domain or one of the tenant's own domains; without
  one, `agent_default_domain` (or the node's hostname), created as a system domain on first use.
- idempotent per tenant: if the tenant already has an inbox at `username@domain` it is returned
  (`existed`), credentials are not re-issued. The same holds while falling back: the first
  candidate that is ours is returned, the first free one is created — so a retried call never
  creates a second inbox. An inbox of the same tenant but in another workspace than the one a
  workspace key may see counts as taken (a `wk_` key must not learn about other workspaces).
- a collision with anything else (another tenant's inbox, an alias, a list) falls back to
  username1 … username99; `strict` turns that into `UsernameTaken`.
- the plan limit is the tenant's `max_mailboxes` (0 = unlimited), and its reseller's, checked by
  `directory.limits` -> `MailboxLimitReached` (agent dialect: 403 PLAN_LIMIT_REACHED). A call
  that finds its existing inbox is not a creation and is never refused by the limit.

The IMAP/SMTP password is generated here and stored only as Argon2id: it is returned once, at
creation (or by `rotate_password`); Mailwright never stores a plaintext mail password.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from mailwright.directory import apikeys, domains, limits, passwords
from mailwright.directory.apikeys import KeyContext
from mailwright.directory.errors import AlreadyExists, DirectoryError, Invalid, NotFound
from mailwright.directory.names import normalize_domain
from mailwright.directory.workspaces import ensure_default_workspace, get_workspace
from mailwright.services import Services
from mailwright.storage.models import Address, Credential, Domain, Message, Principal, Tenant

_USERNAME = re.compile(r"^[a-z0-9_-]+(\.[a-z0-9_-]+)*$")
MAX_FALLBACK = 99


class UsernameTaken(DirectoryError):
    code = "usernameTaken"

    def __init__(self, requested: str, attempted: str, domain: str) -> None:
        super().__init__(f"{attempted}@{domain} is already taken", field="username", value=attempted)
        self.requested = requested
        self.attempted = attempted
        self.domain = domain


@dataclass
class InboxCreated:
    inbox: Principal
    existed: bool
    password: str | None = None  # plaintext, only when newly created
    api_key: str | None = None  # ak_ key, only when newly created


def check_username(username: object) -> str:
    if not isinstance(username, str):
        raise Invalid("username must be a string", field="username", value=username)
    u = username.strip().lower()
    if not u or len(u) > 60 or not _USERNAME.match(u):
        raise Invalid("username may contain only lowercase letters, digits, '.', '-' and '_'",
                      field="username", value=username)
    return u


def username_from(name: str) -> str:
    """A username derived from a tenant name ("Acme Corp" -> "acme-corp")."""
    u = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40].strip("-")
    return u or "inbox"


def default_domain_name(svc: Services) -> str:
    return normalize_domain(svc.settings.agent_default_domain or svc.settings.hostname, field="domain")


async def resolve_domain(session: AsyncSession, svc: Services, tenant_id: str, domain: object) -> Domain:
    if domain is None or domain == "":
        name = default_domain_name(svc)
        dom = await domains.find_domain(session, name)
        if dom is None:
            dom = await domains.create_domain(session, None, name, is_system=True,
                                              description="agent inbox default domain")
    else:
        if not isinstance(domain, str):
            raise Invalid("domain must be a string", field="domain", value=domain)
        dom = await domains.find_domain(session, normalize_domain(domain, field="domain"))
    if dom is None or not (dom.is_system or dom.tenant_id == tenant_id):
        raise Invalid(f"domain {domain} is not available to this tenant", field="domain", value=domain)
    return dom


def in_scope(ctx: KeyContext, p: Principal) -> bool:
    """May this key see this inbox? Exactly its own scope, nothing wider."""
    if ctx.is_platform:
        return True
    if ctx.scope == "tenant":
        return ctx.tenant_id is not None and p.tenant_id == ctx.tenant_id
    if ctx.scope == "workspace":
        return ctx.workspace_id is not None and p.workspace_id == ctx.workspace_id
    if ctx.scope == "inbox":
        return ctx.principal_id == p.id
    return False


async def _owner(session: AsyncSession, address: str) -> Principal | None:
    q = select(Principal).join(Address, Address.principal_id == Principal.id).where(Address.address == address)
    p = (await session.execute(q)).scalar_one_or_none()
    if p is None:
        p = (await session.execute(select(Principal).where(Principal.name == address))).scalar_one_or_none()
    return p


async def create_inbox(
    svc: Services, tenant_id: str, *, username: object = None, domain: object = None,
    display_name: object = None, workspace_id: str | None = None, strict: bool = False,
    only_workspace: str | None = None, created_by: str | None = None,
) -> InboxCreated:
    """See the module docstring. `only_workspace`: the caller is a workspace key.

    Two concurrent creates of one name on PostgreSQL: the loser's commit fails on the unique
    address (or finds the default domain made meanwhile); it runs again and then finds the
    winner's inbox (idempotent) or falls back."""
    for attempt in range(5):
        try:
            return await _create_inbox(svc, tenant_id, username=username, domain=domain,
                                       display_name=display_name, workspace_id=workspace_id, strict=strict,
                                       only_workspace=only_workspace, created_by=created_by)
        except (IntegrityError, AlreadyExists):  # AlreadyExists: the default domain, made concurrently
            if attempt == 4:
                raise
    raise AssertionError("unreachable")


async def _create_inbox(
    svc: Services, tenant_id: str, *, username: object, domain: object, display_name: object,
    workspace_id: str | None, strict: bool, only_workspace: str | None, created_by: str | None,
) -> InboxCreated:
    if display_name is not None and (not isinstance(display_name, str) or len(display_name) > 255):
        raise Invalid("displayName must be a string of at most 255 characters", field="displayName")
    password = passwords.generate_password(24)
    password_hash = await passwords.hash_password(password)  # before the writer lock is taken
    from mailwright.mailstore import mailboxes

    async with svc.db.write() as s:
        tenant = await s.get(Tenant, tenant_id)
        if tenant is None or tenant.status == "terminated":
            raise NotFound("tenant not found")
        requested = check_username(username) if username is not None else username_from(tenant.name)
        dom = await resolve_domain(s, svc, tenant_id, domain)
        if workspace_id is not None:
            ws = await get_workspace(s, workspace_id, tenant_id)
        else:
            ws = await ensure_default_workspace(s, tenant_id)
        for i in range(MAX_FALLBACK + 1):
            cand = requested if i == 0 else f"{requested}{i}"
            address = f"{cand}@{dom.name}"
            owner = await _owner(s, address)
            if owner is not None:
                ours = (owner.tenant_id == tenant_id and owner.type == "individual"
                        and owner.workspace_id is not None
                        and (only_workspace is None or owner.workspace_id == only_workspace))
                if ours:
                    return InboxCreated(inbox=owner, existed=True)
                if strict:
                    raise UsernameTaken(requested, cand, dom.name)
                continue
            await limits.check_room(s, tenant_id, mailboxes=1)
            p = Principal(tenant_id=tenant_id, workspace_id=ws.id, domain_id=dom.id, type="individual",
                          name=address, display_name=display_name, quota_bytes=svc.settings.default_quota_bytes,
                          extra={"agent": True, "requestedUsername": requested})
            s.add(p)
            await s.flush()
            s.add(Address(address=address, principal_id=p.id, domain_id=dom.id, is_primary=True))
            s.add(Credential(principal_id=p.id, secret_hash=password_hash, label="imap"))
            await mailboxes.ensure_defaults(s, p.id)
            _, key = await apikeys.create_key(s, prefix="ak_", scope="inbox", tenant_id=tenant_id,
                                              workspace_id=ws.id, principal_id=p.id, name=address,
                                              created_by=created_by)
            await s.flush()
            return InboxCreated(inbox=p, existed=False, password=password, api_key=key)
    raise UsernameTaken(requested, f"{requested}{MAX_FALLBACK}", dom.name)


async def get_inbox(session: AsyncSession, inbox_id: str, ctx: KeyContext) -> Principal:
    p = await session.get(Principal, inbox_id)
    if p is None or p.type != "individual" or p.workspace_id is None or not in_scope(ctx, p):
        raise NotFound(f"inbox {inbox_id} not found", field="id", value=inbox_id)
    return p


async def list_inboxes(session: AsyncSession, ctx: KeyContext, *, workspace_id: str | None = None,
                       limit: int = 100, offset: int = 0) -> list[Principal]:
    q = select(Principal).where(Principal.type == "individual", Principal.workspace_id.is_not(None))
    if ctx.scope == "tenant":
        q = q.where(Principal.tenant_id == ctx.tenant_id)
    elif ctx.scope == "workspace":
        q = q.where(Principal.workspace_id == ctx.workspace_id)
    elif ctx.scope == "inbox":
        q = q.where(Principal.id == ctx.principal_id)
    elif not ctx.is_platform:
        return []
    if workspace_id is not None:
        q = q.where(Principal.workspace_id == workspace_id)
    q = q.order_by(Principal.created_at, Principal.name).offset(offset).limit(limit)
    return list((await session.execute(q)).scalars())


async def addresses(session: AsyncSession, principal_id: str) -> list[tuple[str, bool]]:
    q = select(Address.address, Address.is_primary).where(Address.principal_id == principal_id).order_by(
        Address.is_primary.desc(), Address.id)
    return [(str(a), bool(p)) for a, p in (await session.execute(q)).all()]


_UNSET = object()


async def update_inbox(svc: Services, inbox_id: str, ctx: KeyContext, *, display_name: object = _UNSET,
                       status: object = _UNSET) -> Principal:
    """Rename, pause or resume. A paused inbox cannot send (API 403, SMTP AUTH refused) nor log
    in over IMAP/POP3; its mail is kept."""
    async with svc.db.write() as s:
        p = await get_inbox(s, inbox_id, ctx)
        if display_name is not _UNSET:
            if display_name is not None and (not isinstance(display_name, str) or len(display_name) > 255):
                raise Invalid("displayName must be a string of at most 255 characters", field="displayName")
            p.display_name = display_name
        if status is not _UNSET:
            if status not in ("active", "paused"):
                raise Invalid("status must be 'active' or 'paused'", field="status", value=status)
            p.status = str(status)
        await s.flush()
        return p


async def rotate_password(svc: Services, inbox_id: str, ctx: KeyContext) -> tuple[Principal, str]:
    """A new IMAP/SMTP password (returned once); the old one stops working at once."""
    password = passwords.generate_password(24)
    digest = await passwords.hash_password(password)
    async with svc.db.write() as s:
        p = await get_inbox(s, inbox_id, ctx)
        await s.execute(delete(Credential).where(Credential.principal_id == p.id))
        s.add(Credential(principal_id=p.id, secret_hash=digest, label="imap"))
    return p, password


async def _purge_principals(svc: Services, s: AsyncSession, principal_ids: list[str]) -> set[str]:
    """Blob hashes used by these principals' messages (to collect once their rows are gone)."""
    if not principal_ids:
        return set()
    q = select(Message.blob_hash).where(Message.principal_id.in_(principal_ids)).distinct()
    return {str(h) for h in (await s.execute(q)).scalars()}


async def _collect_blobs(svc: Services, s: AsyncSession, hashes: set[str]) -> list[str]:
    from mailwright.mailstore.changes import unreferenced_blobs

    return await unreferenced_blobs(s, hashes)


async def delete_inbox(svc: Services, inbox_id: str, ctx: KeyContext) -> None:
    """The inbox, its addresses, keys, mailboxes and mail; blobs nobody else uses are unlinked."""
    from mailwright.mailstore.changes import remove_blob_files

    async with svc.db.write() as s:
        p = await get_inbox(s, inbox_id, ctx)
        hashes = await _purge_principals(svc, s, [p.id])
        await s.execute(delete(Principal).where(Principal.id == p.id))
        await s.flush()
        gone = await _collect_blobs(svc, s, hashes)
    remove_blob_files(svc, gone)

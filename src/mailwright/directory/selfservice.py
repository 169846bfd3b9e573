"""Self-service mailboxes (the mail.cx dialect): system domains, sign-up, sign-in, Pro accounts,
custom domains with DNS verification and Pro tokens. Every rule lives here; `api/mailcx` only
translates HTTP.

Decisions:

* **System domain** = `Domain(tenant_id=None, is_system=True, verified=True)`, managed by the
  platform admin (API `/api/admin/system-domains`, CLI `mailwright system-domain`). Anyone may
  sign up on one. A self-service account is an individual Principal with tenant_id None, role
  "user", quota `selfservice_quota_bytes` (40 MiB by default, like the reference service), its
  name = its address.
* **Passwords**: at least 6 characters (this dialect's documented rule, not
  `password_min_length`); stored as Argon2id like every other password, so the same password
  logs in over IMAP/POP3/SMTP AUTH. A password reset stamps `pw_changed_at` (unix seconds) in
  `Principal.extra`; JWTs issued before it are refused (`directory.jwt_tokens`).
* **Pro**: promotion (platform admin API or `mailwright selfservice pro ADDRESS`) sets role "pro"
  and creates a Tenant (kind "tenant", name `pro-<principal id>`, remembered as
  `extra["pro_tenant_id"]`) that owns the Pro user's custom domains and the mailboxes created on
  them. `tm_pro_` tokens are tenant-scope API keys of that tenant naming the owner. The Pro
  owner's own mailbox stays on its system domain (tenant None).
* **Custom domains**: created pending (`verified` False, random `verify_token`). Verification
  looks up `mailwright-verification=<token>` in the TXT records of the domain apex with the
  configured resolver: the TXT record proves ownership and alone makes the domain verified
  (`verified_at`); the MX check (an MX naming `settings.hostname`) is reported as
  `mx_configured` at each check, as the reference service does, but does not gate verification
  (mail simply does not arrive until it is right). A pending domain is not hosted: routing
  treats it as relay and sign-up on it answers `invalid_domain`. At most `pro_max_domains`
  domains per Pro user (`domain_limit_reached`). Names are unique platform-wide, so a pending
  claim blocks others: one left unverified for 72 hours is released to the next Pro user who
  adds the name (a squatter cannot hold someone else's domain; the real owner can prove it).
* **Sign-in (`/api/token`)** only for self-service accounts (tenant None, or a Pro tenant's):
  the accounts of management/agent tenants keep their own dialects.
* **Deleting an account** removes its principal, mail and unreferenced blobs; deleting a Pro
  owner also removes its Pro tenant with every custom domain and mailbox on it.
* A Pro tenant's `Tenant.max_mailboxes` / `max_domains` (0 = unlimited) are the common tenant
  limits (`directory.limits`, checked where the rows are inserted), answered here with this
  dialect's codes `account_limit_reached` / `domain_limit_reached`. The per-IP daily sign-up cap
  is the API layer's (it knows the IP).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from mailwright.directory import apikeys, domains, logins, passwords
from mailwright.directory.errors import (
    AlreadyExists,
    DirectoryError,
    DomainLimitReached,
    Invalid,
    MailboxLimitReached,
    NotFound,
)
from mailwright.directory.jwt_tokens import Claims, still_valid
from mailwright.directory.names import normalize_address, normalize_domain
from mailwright.directory.principals import PrincipalSpec, create_principal, delete_principal_rows, set_secrets
from mailwright.mailauth.resolver import DnsError, Resolver
from mailwright.storage.models import ApiKey, Domain, Principal, Tenant, utcnow

if TYPE_CHECKING:
    from mailwright.services import Services

PASSWORD_MIN = 6
PRO_PREFIX = "tm_pro_"
TXT_PREFIX = "mailwright-verification="
PENDING_CLAIM_TTL = timedelta(hours=72)


class SelfServiceError(DirectoryError):
    """An error with one of this dialect's own codes (invalid_address, address_taken, ...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class ProContext:
    tenant_id: str
    owner_id: str


# --------------------------------------------------------------------------------- system domains


async def add_system_domain(svc: Services, name: str) -> Domain:
    async with svc.db.write() as s:
        return await domains.create_domain(s, None, name, is_system=True)


async def list_system_domains(svc: Services) -> list[Domain]:
    async with svc.db.read() as s:
        q = select(Domain).where(Domain.is_system.is_(True)).order_by(Domain.name)
        return list((await s.execute(q)).scalars())


async def remove_system_domain(svc: Services, name: str) -> None:
    """Removes the domain and every mailbox on it (see `directory.domains.delete_domain`)."""
    canonical = normalize_domain(name)
    async with svc.db.read() as s:
        dom = await domains.find_domain(s, canonical)
    if dom is None or not dom.is_system:
        raise NotFound(f"system domain {canonical} not found", field="domain", value=canonical)
    await domains.delete_domain(svc, None, canonical)


# --------------------------------------------------------------------------------- accounts


def check_password(password: object) -> str:
    if not isinstance(password, str) or len(password) < PASSWORD_MIN:
        raise SelfServiceError("invalid_password", f"password must be at least {PASSWORD_MIN} characters")
    if len(password) > 1024:
        raise SelfServiceError("invalid_password", "password is too long")
    return password


def _address(address: object) -> str:
    if not isinstance(address, str) or not address.strip():
        raise SelfServiceError("invalid_address", "address must be a full email address (user@domain)")
    try:
        return normalize_address(address)
    except Invalid:
        raise SelfServiceError("invalid_address", f"invalid email address {address!r}") from None


def is_pending(dom: Domain) -> bool:
    return not dom.verified and dom.verify_token is not None


async def sign_up(svc: Services, address: object, password: object, *, pro: ProContext | None = None) -> Principal:
    """Create a mailbox on a system domain, or (with `pro`) on the Pro user's verified domain."""
    addr = _address(address)
    pw = check_password(password)
    domain_name = addr.rpartition("@")[2]
    async with svc.db.read() as s:
        dom = await domains.find_domain(s, domain_name)
        if dom is not None and is_pending(dom):
            raise SelfServiceError("invalid_domain", f"domain {domain_name} is not verified yet")
        if dom is not None and dom.is_system and dom.verified:
            tenant_id: str | None = None
        elif dom is not None and pro is not None and dom.tenant_id == pro.tenant_id and dom.verified:
            tenant_id = pro.tenant_id
        else:
            raise SelfServiceError("invalid_address", f"{domain_name} is not an available domain")
    spec = PrincipalSpec(type="individual", name=addr, secrets=[pw], quota=svc.settings.selfservice_quota_bytes,
                         role="user")
    try:
        return await create_principal(svc.db, tenant_id, spec, password_min_length=PASSWORD_MIN)
    except AlreadyExists:
        raise SelfServiceError("address_taken", f"address {addr} is already in use") from None
    except MailboxLimitReached as exc:
        raise SelfServiceError("account_limit_reached", exc.message) from None
    except Invalid as exc:
        raise SelfServiceError("invalid_address", exc.message) from None


async def _is_selfservice(s: AsyncSession, p: Principal) -> bool:
    if p.tenant_id is None:
        return True
    t = await s.get(Tenant, p.tenant_id)
    return t is not None and t.kind == "tenant" and t.name.startswith("pro-")


async def sign_in(svc: Services, address: object, password: object) -> Principal:
    """The account for this address and password, else `invalid_credentials` (never which part)."""
    bad = SelfServiceError("invalid_credentials", "wrong email or password")
    if not isinstance(address, str) or not isinstance(password, str):
        raise bad
    account = await logins.login(svc.db, address.strip().lower(), password)
    if account is None:
        raise bad
    async with svc.db.read() as s:
        p = await s.get(Principal, account.principal_id)
        if p is None or not await _is_selfservice(s, p):
            raise bad
    return p


async def account_for_claims(svc: Services, claims: Claims) -> Principal | None:
    """The live account a JWT names (None: deleted, paused, or the password changed since)."""
    async with svc.db.read() as s:
        p = await s.get(Principal, claims.principal_id)
    if p is None or p.type != "individual" or p.status != "active" or not still_valid(claims, p.extra):
        return None
    return p


async def get_account(svc: Services, principal_id: str) -> Principal:
    async with svc.db.read() as s:
        p = await s.get(Principal, principal_id)
    if p is None:
        raise NotFound("account not found")
    return p


async def delete_account(svc: Services, principal_id: str) -> None:
    """The account, its mail, and (for a Pro owner) its Pro tenant with every domain and mailbox."""
    from mailwright.mailstore.changes import remove_blob_files

    freed: list[str] = []
    async with svc.db.write() as s:
        p = await s.get(Principal, principal_id)
        if p is None:
            raise NotFound("account not found")
        pro_tenant = (p.extra or {}).get("pro_tenant_id")
        if isinstance(pro_tenant, str):
            members = list((await s.execute(select(Principal).where(Principal.tenant_id == pro_tenant))).scalars())
            for m in members:
                freed += await delete_principal_rows(s, m)
            await s.execute(delete(Domain).where(Domain.tenant_id == pro_tenant))
            await s.execute(delete(Tenant).where(Tenant.id == pro_tenant))
        freed += await delete_principal_rows(s, p)
    remove_blob_files(svc, freed)


async def _set_password(svc: Services, p_check: ProContext | None, principal_id: str, password: object) -> None:
    pw = check_password(password)
    digest = await passwords.hash_password(pw)
    async with svc.db.write() as s:
        p = await s.get(Principal, principal_id)
        if p is None or p.type != "individual" or (p_check is not None and p.tenant_id != p_check.tenant_id):
            raise NotFound("account not found")
        await set_secrets(s, p.id, [digest])
        p.extra = {**(p.extra or {}), "pw_changed_at": int(time.time())}


async def reset_password(svc: Services, pro: ProContext, account_id: str, password: object) -> None:
    """A Pro user resets the password of a mailbox on its domains; old JWTs stop working."""
    await _set_password(svc, pro, account_id, password)


# --------------------------------------------------------------------------------- Pro


async def promote_pro(svc: Services, address: str) -> tuple[Principal, str]:
    """Make a self-service account Pro (idempotent) and mint a new `tm_pro_` token (shown once)."""
    async with svc.db.write() as s:
        q = select(Principal).where(Principal.name == address.strip().lower())
        p = (await s.execute(q)).scalar_one_or_none()
        if p is None or p.type != "individual" or p.tenant_id is not None:
            raise NotFound(f"no self-service account {address!r}", field="address", value=address)
        tid = (p.extra or {}).get("pro_tenant_id")
        tenant = await s.get(Tenant, tid) if isinstance(tid, str) else None
        if tenant is None:
            tenant = Tenant(kind="tenant", name=f"pro-{p.id}", plan="paid")
            s.add(tenant)
            await s.flush()
        p.role = "pro"
        p.extra = {**(p.extra or {}), "pro_tenant_id": tenant.id}
        _, key = await apikeys.create_key(s, prefix=PRO_PREFIX, scope="tenant", tenant_id=tenant.id,
                                          principal_id=p.id, name="pro")
    return p, key


def pro_context_of(p: Principal) -> ProContext | None:
    tid = (p.extra or {}).get("pro_tenant_id")
    if p.role != "pro" or not isinstance(tid, str):
        return None
    return ProContext(tenant_id=tid, owner_id=p.id)


def pro_context_for_key(ctx: apikeys.KeyContext) -> ProContext | None:
    if ctx.prefix != PRO_PREFIX or ctx.tenant_id is None or ctx.principal_id is None:
        return None
    return ProContext(tenant_id=ctx.tenant_id, owner_id=ctx.principal_id)


async def list_accounts(svc: Services, pro: ProContext) -> list[Principal]:
    async with svc.db.read() as s:
        q = select(Principal).where(Principal.tenant_id == pro.tenant_id, Principal.type == "individual").order_by(
            Principal.created_at, Principal.name)
        return list((await s.execute(q)).scalars())


async def get_pro_account(svc: Services, pro: ProContext, account_id: str) -> Principal:
    async with svc.db.read() as s:
        p = await s.get(Principal, account_id)
    if p is None or p.tenant_id != pro.tenant_id or p.type != "individual":
        raise NotFound("account not found")
    return p


async def delete_pro_account(svc: Services, pro: ProContext, account_id: str) -> None:
    await get_pro_account(svc, pro, account_id)
    await delete_account(svc, account_id)


# --------------------------------------------------------------------------------- custom domains


async def add_custom_domain(svc: Services, pro: ProContext, name: object) -> Domain:
    if not isinstance(name, str) or not name.strip():
        raise SelfServiceError("invalid_domain", "field 'domain' must be a domain name")
    try:
        canonical = normalize_domain(name)
    except Invalid:
        raise SelfServiceError("invalid_domain", f"invalid domain name {name!r}") from None
    if "." not in canonical or canonical == svc.settings.hostname.lower():
        raise SelfServiceError("invalid_domain", f"{canonical} cannot be used as a custom domain")
    async with svc.db.write() as s:
        n = (await s.execute(select(func.count()).select_from(Domain).where(
            Domain.tenant_id == pro.tenant_id))).scalar_one()
        if svc.settings.pro_max_domains and n >= svc.settings.pro_max_domains:
            raise SelfServiceError("domain_limit_reached",
                                   f"at most {svc.settings.pro_max_domains} custom domains per Pro account")
        existing = await domains.find_domain(s, canonical)
        if (existing is not None and is_pending(existing) and existing.tenant_id != pro.tenant_id
                and existing.created_at is not None and utcnow() - existing.created_at > PENDING_CLAIM_TTL):
            await s.delete(existing)  # a stale unproven claim does not block the real owner
            await s.flush()
        try:
            dom = await domains.create_domain(s, pro.tenant_id, canonical)
        except AlreadyExists:
            raise SelfServiceError("domain_already_exists", f"domain {canonical} already exists") from None
        except DomainLimitReached as exc:
            raise SelfServiceError("domain_limit_reached", exc.message) from None
        dom.verified = False
        dom.verify_token = secrets.token_hex(16)
        await s.flush()
    return dom


async def list_custom_domains(svc: Services, pro: ProContext) -> list[Domain]:
    async with svc.db.read() as s:
        q = select(Domain).where(Domain.tenant_id == pro.tenant_id).order_by(Domain.created_at, Domain.name)
        return list((await s.execute(q)).scalars())


async def get_custom_domain(svc: Services, pro: ProContext, domain_id: str) -> Domain:
    async with svc.db.read() as s:
        dom = await s.get(Domain, domain_id)
    if dom is None or dom.tenant_id != pro.tenant_id:
        raise NotFound("domain not found")
    return dom


async def delete_custom_domain(svc: Services, pro: ProContext, domain_id: str) -> None:
    dom = await get_custom_domain(svc, pro, domain_id)
    await domains.delete_domain(svc, pro.tenant_id, dom.name)


@dataclass(frozen=True)
class DnsCheck:
    txt_found: bool
    mx_configured: bool


async def check_dns(svc: Services, name: str, token: str) -> DnsCheck:
    """Look up the apex TXT and MX records with the configured resolver (errors = not found)."""
    st = svc.settings
    resolver = Resolver(st.dns_nameservers or None, st.dns_port, timeout=5.0)
    want = f"{TXT_PREFIX}{token}".encode()
    try:
        txt_found = any(t.strip() == want for t in await resolver.txt(name))
    except DnsError:
        txt_found = False
    host = st.hostname.lower().rstrip(".")
    try:
        mxs = await resolver.query(name, "MX")
        mx_ok = any(str(r.exchange).rstrip(".").lower() == host for r in mxs)  # type: ignore[attr-defined]
    except DnsError:
        mx_ok = False
    return DnsCheck(txt_found, mx_ok)


async def verify_custom_domain(svc: Services, pro: ProContext, domain_id: str) -> Domain:
    dom = await get_custom_domain(svc, pro, domain_id)
    result = await check_dns(svc, dom.name, dom.verify_token or "")
    async with svc.db.write() as s:
        row = await s.get(Domain, dom.id)
        if row is None or row.tenant_id != pro.tenant_id:
            raise NotFound("domain not found")
        row.mx_configured = result.mx_configured
        if result.txt_found and not row.verified:
            row.verified = True
            row.verified_at = utcnow()
        await s.flush()
    return row


# --------------------------------------------------------------------------------- Pro tokens


async def list_pro_tokens(svc: Services, pro: ProContext) -> list[ApiKey]:
    async with svc.db.read() as s:
        q = select(ApiKey).where(ApiKey.tenant_id == pro.tenant_id, ApiKey.prefix == PRO_PREFIX,
                                 ApiKey.revoked_at.is_(None)).order_by(ApiKey.created_at)
        return list((await s.execute(q)).scalars())


async def create_pro_token(svc: Services, pro: ProContext, name: object) -> tuple[ApiKey, str]:
    if name is not None and (not isinstance(name, str) or len(name) > 255):
        raise Invalid("name must be a string of at most 255 characters", field="name")
    async with svc.db.write() as s:
        return await apikeys.create_key(s, prefix=PRO_PREFIX, scope="tenant", tenant_id=pro.tenant_id,
                                        principal_id=pro.owner_id, name=name or None)


async def revoke_pro_token(svc: Services, pro: ProContext, key_id: str) -> None:
    async with svc.db.write() as s:
        row = await s.get(ApiKey, key_id)
        if row is None or row.tenant_id != pro.tenant_id or row.prefix != PRO_PREFIX or row.revoked_at is not None:
            raise NotFound("token not found")
        row.revoked_at = utcnow()

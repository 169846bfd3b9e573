"""Directory models: who exists and who may do what.

tenant (reseller | tenant) -> workspace, domain -> principal (individual | list) -> addresses,
credentials; API keys scoped to platform/tenant/workspace/inbox. See docs/architecture.md.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from mailwright.storage.models.base import Base, BigIntPK, UTCDateTime, new_id, utcnow


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16), default="tenant")  # reseller | tenant
    name: Mapped[str] = mapped_column(String(255), unique=True)
    plan: Mapped[str] = mapped_column(String(32), default="paid")  # free | paid
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | suspended | terminated
    quota_bytes: Mapped[int] = mapped_column(BigInteger, default=0)  # 0 = unlimited
    pool_bytes: Mapped[int] = mapped_column(BigInteger, default=0)  # reseller: storage it may hand out
    max_tenants: Mapped[int] = mapped_column(Integer, default=0)  # 0 = unlimited
    max_domains: Mapped[int] = mapped_column(Integer, default=0)
    max_mailboxes: Mapped[int] = mapped_column(Integer, default=0)
    send_per_hour: Mapped[int | None] = mapped_column(Integer)  # None = platform default
    send_per_day: Mapped[int | None] = mapped_column(Integer)
    admin_username: Mapped[str | None] = mapped_column(String(255), unique=True)
    admin_password_hash: Mapped[str | None] = mapped_column(Text)
    branding: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Workspace(Base):
    __tablename__ = "workspaces"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Domain(Base):
    __tablename__ = "domains"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    # NULL tenant = platform-owned system domain (self-service sign-up creates mailboxes here).
    tenant_id: Mapped[str | None] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)  # IDNA (A-label) form, lowercase
    is_system: Mapped[bool] = mapped_column(Boolean, default=False)
    verified: Mapped[bool] = mapped_column(Boolean, default=False)
    verify_token: Mapped[str | None] = mapped_column(String(128))
    # Self-service custom domains: when the TXT proof was found, and whether the MX pointed here
    # at the last check (None = never checked). A domain with verified False and a verify_token
    # is pending: routing treats it as not ours (see directory/routing.py).
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    mx_configured: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    catch_all_principal_id: Mapped[str | None] = mapped_column(
        ForeignKey("principals.id", ondelete="SET NULL", use_alter=True)
    )
    dmarc_record: Mapped[str | None] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RetiredDomain(Base):
    """A domain we hosted until its tenant was terminated or it was deleted: its addresses
    answer "550 5.1.1 unknown user" (a permanent, honest bounce) instead of "relay denied",
    until someone adds the domain again."""

    __tablename__ = "retired_domains"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    retired_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Principal(Base):
    """A mailbox owner (individual) or a distribution list (alias/forwarder)."""

    __tablename__ = "principals"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str | None] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    workspace_id: Mapped[str | None] = mapped_column(ForeignKey("workspaces.id", ondelete="SET NULL"), index=True)
    domain_id: Mapped[str | None] = mapped_column(ForeignKey("domains.id", ondelete="CASCADE"), index=True)
    type: Mapped[str] = mapped_column(String(16))  # individual | list
    name: Mapped[str] = mapped_column(String(320), unique=True)  # login name, usually the primary address
    description: Mapped[str | None] = mapped_column(Text)
    display_name: Mapped[str | None] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default="user")
    quota_bytes: Mapped[int] = mapped_column(BigInteger, default=0)  # 0 = unlimited
    used_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    send_per_hour: Mapped[int | None] = mapped_column(Integer)
    send_per_day: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | paused
    extra: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Address(Base):
    """An address routes to exactly one principal, platform-wide (unique constraint)."""

    __tablename__ = "addresses"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    address: Mapped[str] = mapped_column(String(320), unique=True)  # lowercase, IDNA domain
    principal_id: Mapped[str] = mapped_column(ForeignKey("principals.id", ondelete="CASCADE"), index=True)
    domain_id: Mapped[str] = mapped_column(ForeignKey("domains.id", ondelete="CASCADE"), index=True)
    is_primary: Mapped[bool] = mapped_column(Boolean, default=False)


class ListMember(Base):
    __tablename__ = "list_members"
    __table_args__ = (UniqueConstraint("list_id", "member"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    list_id: Mapped[str] = mapped_column(ForeignKey("principals.id", ondelete="CASCADE"), index=True)
    member: Mapped[str] = mapped_column(String(320))  # an address, local or external


class Credential(Base):
    __tablename__ = "credentials"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    principal_id: Mapped[str] = mapped_column(ForeignKey("principals.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16), default="password")
    secret_hash: Mapped[str] = mapped_column(Text)  # Argon2id PHC string
    label: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ApiKey(Base):
    """Random bearer key, stored as SHA-256; the prefix tells its tier (sa_, tk_, wk_, ak_, ...)."""

    __tablename__ = "api_keys"
    __table_args__ = (Index("ix_api_keys_tenant_scope", "tenant_id", "scope"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))  # sa_ | tk_ | wk_ | ak_ | rk_ | mxm_ | tm_pro_ ...
    hint: Mapped[str] = mapped_column(String(32))  # first characters, for listings
    # platform | reseller | tenant | workspace | inbox | domain
    scope: Mapped[str] = mapped_column(String(16))
    tenant_id: Mapped[str | None] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    workspace_id: Mapped[str | None] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    principal_id: Mapped[str | None] = mapped_column(ForeignKey("principals.id", ondelete="CASCADE"))
    permissions: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # {"example.com": ["emails","dns"]}
    name: Mapped[str | None] = mapped_column(String(255))
    created_by: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class DkimKeyRow(Base):
    __tablename__ = "dkim_keys"
    __table_args__ = (UniqueConstraint("domain_id", "selector"),)

    id: Mapped[str] = mapped_column(String(255), primary_key=True, default=new_id)
    domain_id: Mapped[str] = mapped_column(ForeignKey("domains.id", ondelete="CASCADE"), index=True)
    selector: Mapped[str] = mapped_column(String(63))
    algorithm: Mapped[str] = mapped_column(String(32))  # ed25519-sha256 | rsa-sha256
    private_key: Mapped[str] = mapped_column(Text)  # PEM (rsa) or base64 seed (ed25519)
    public_txt: Mapped[str] = mapped_column(Text)  # the DNS TXT value
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AuditEntry(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str | None] = mapped_column(String(36), index=True)
    actor: Mapped[str | None] = mapped_column(String(320))
    key_id: Mapped[str | None] = mapped_column(String(36))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str | None] = mapped_column(String(320))
    source_ip: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)

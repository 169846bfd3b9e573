"""Tenants as the agent dialect sees them, workspaces, and workspace keys.

A workspace groups inboxes inside a tenant; every tenant has a default one (made with the
tenant), which cannot be deleted. A workspace that still holds inboxes cannot be deleted
either (the caller deletes the inboxes first) — deleting mail as a side effect of a
"workspace" call would be a surprise. Keys are minted by `apikeys.create_key`, shown once.
"""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from mailwright.directory import apikeys
from mailwright.directory.errors import AlreadyExists, DirectoryError, Forbidden, Invalid, MissingField, NotFound
from mailwright.storage.models import ApiKey, Principal, Tenant, Workspace, utcnow


class NotEmpty(DirectoryError):
    code = "notEmpty"


def _check_name(name: object, field: str = "name") -> str:
    if name is None or (isinstance(name, str) and not name.strip()):
        raise MissingField(f"field '{field}' is required", field=field)
    if not isinstance(name, str) or len(name.strip()) > 255:
        raise Invalid(f"{field} must be a string of at most 255 characters", field=field, value=name)
    return name.strip()


async def create_tenant(session: AsyncSession, name: object, *, created_by: str | None = None
                        ) -> tuple[Tenant, Workspace, str]:
    """A tenant, its default workspace and its first `tk_` master key (plaintext returned once)."""
    clean = _check_name(name)
    if (await session.execute(select(Tenant.id).where(Tenant.name == clean))).first():
        raise AlreadyExists(f"tenant {clean!r} already exists", field="name", value=clean)
    t = Tenant(name=clean, kind="tenant", plan="paid")
    session.add(t)
    await session.flush()
    ws = Workspace(tenant_id=t.id, name="default", is_default=True)
    session.add(ws)
    await session.flush()
    _, key = await apikeys.create_key(session, prefix="tk_", scope="tenant", tenant_id=t.id, name="master",
                                      created_by=created_by)
    return t, ws, key


async def list_tenants(session: AsyncSession) -> list[Tenant]:
    q = select(Tenant).where(Tenant.status != "terminated").order_by(Tenant.created_at, Tenant.name)
    return list((await session.execute(q)).scalars())


async def create_workspace(session: AsyncSession, tenant_id: str, name: object) -> Workspace:
    clean = _check_name(name)
    t = await session.get(Tenant, tenant_id)
    if t is None or t.status == "terminated":
        raise NotFound("tenant not found")
    ws = Workspace(tenant_id=tenant_id, name=clean, is_default=False)
    session.add(ws)
    await session.flush()
    return ws


async def ensure_default_workspace(session: AsyncSession, tenant_id: str) -> Workspace:
    q = select(Workspace).where(Workspace.tenant_id == tenant_id, Workspace.is_default.is_(True))
    ws = (await session.execute(q)).scalars().first()
    if ws is None:
        ws = Workspace(tenant_id=tenant_id, name="default", is_default=True)
        session.add(ws)
        await session.flush()
    return ws


async def get_workspace(session: AsyncSession, workspace_id: str, tenant_id: str | None) -> Workspace:
    """Tenant-scoped (None = platform): another tenant's workspace is not found, never forbidden."""
    ws = await session.get(Workspace, workspace_id)
    if ws is None or (tenant_id is not None and ws.tenant_id != tenant_id):
        raise NotFound(f"workspace {workspace_id} not found", field="workspaceId", value=workspace_id)
    return ws


async def list_workspaces(session: AsyncSession, tenant_id: str | None, workspace_id: str | None = None
                          ) -> list[Workspace]:
    q = select(Workspace)
    if tenant_id is not None:
        q = q.where(Workspace.tenant_id == tenant_id)
    if workspace_id is not None:
        q = q.where(Workspace.id == workspace_id)
    return list((await session.execute(q.order_by(Workspace.created_at, Workspace.name))).scalars())


async def inbox_count(session: AsyncSession, workspace_id: str) -> int:
    q = select(func.count()).select_from(Principal).where(Principal.workspace_id == workspace_id)
    return int((await session.execute(q)).scalar_one())


async def delete_workspace(session: AsyncSession, workspace_id: str, tenant_id: str | None) -> None:
    ws = await get_workspace(session, workspace_id, tenant_id)
    if ws.is_default:
        raise Forbidden("the default workspace cannot be deleted")
    if await inbox_count(session, ws.id):
        raise NotEmpty("the workspace still has inboxes; delete them first")
    await session.delete(ws)  # its keys go with it (ON DELETE CASCADE)
    await session.flush()


async def create_workspace_key(session: AsyncSession, ws: Workspace, name: object = None,
                               created_by: str | None = None) -> tuple[ApiKey, str]:
    label = _check_name(name) if name is not None else None
    return await apikeys.create_key(session, prefix="wk_", scope="workspace", tenant_id=ws.tenant_id,
                                    workspace_id=ws.id, name=label, created_by=created_by)


async def list_workspace_keys(session: AsyncSession, workspace_id: str) -> list[ApiKey]:
    q = select(ApiKey).where(ApiKey.workspace_id == workspace_id, ApiKey.scope == "workspace",
                             ApiKey.revoked_at.is_(None)).order_by(ApiKey.created_at)
    return list((await session.execute(q)).scalars())


async def revoke_workspace_key(session: AsyncSession, workspace_id: str, key_id: str) -> None:
    q = update(ApiKey).where(ApiKey.id == key_id, ApiKey.workspace_id == workspace_id,
                             ApiKey.scope == "workspace", ApiKey.revoked_at.is_(None)).values(revoked_at=utcnow())
    if (await session.execute(q)).rowcount == 0:  # type: ignore[attr-defined]
        raise NotFound(f"key {key_id} not found", field="key_id", value=key_id)

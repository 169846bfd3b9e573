"""`/v1/workspaces` and their keys.

tk_ keys manage every workspace of their tenant; a wk_ key sees only its own workspace (and may
mint/revoke keys for it, being that workspace's master); ak_ keys get 403. A platform key acts
on every tenant; it creates in the tenant named by `tenantId` (body) or `X-Mailwright-Tenant`,
else the default tenant.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from mailwright.api.agent.common import ApiError, handle, idempotent, iso, json_object, require_key
from mailwright.api.auth import services
from mailwright.directory import tenants, workspaces
from mailwright.directory.apikeys import KeyContext
from mailwright.storage.models import ApiKey, Workspace

router = APIRouter(tags=["agent: workspaces"])


def workspace_json(ws: Workspace, inbox_count: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"id": ws.id, "name": ws.name, "tenantId": ws.tenant_id, "isDefault": ws.is_default,
                           "createdAt": iso(ws.created_at)}
    if inbox_count is not None:
        out["inboxCount"] = inbox_count
    return out


def key_json(k: ApiKey) -> dict[str, Any]:
    return {"id": k.id, "name": k.name, "prefix": k.prefix, "hint": k.hint, "workspaceId": k.workspace_id,
            "createdAt": iso(k.created_at), "lastUsedAt": iso(k.last_used_at)}


async def platform_tenant(request: Request, body: dict[str, Any]) -> str:
    """The tenant a platform key acts on."""
    svc = services(request)
    named = body.get("tenantId") or request.headers.get("x-mailwright-tenant")
    async with svc.db.write() as s:
        if named:
            if not isinstance(named, str):
                raise ApiError(400, "INVALID_REQUEST", "tenantId must be a string")
            return (await tenants.get_tenant(s, named)).id
        return (await tenants.ensure_default_tenant(s)).id


async def visible_workspace(request: Request, ctx: KeyContext, workspace_id: str) -> Workspace:
    svc = services(request)
    if ctx.scope == "workspace" and workspace_id != ctx.workspace_id:
        raise ApiError(404, "NOT_FOUND", f"workspace {workspace_id} not found")
    async with svc.db.read() as s:
        return await workspaces.get_workspace(s, workspace_id, None if ctx.is_platform else ctx.tenant_id)


@router.post("/workspaces")
async def create_workspace(request: Request) -> Response:
    async def go() -> Response:
        c = await require_key(request, "tenant")
        body = await json_object(request)
        tenant_id = await platform_tenant(request, body) if c.is_platform else c.tenant_id
        assert tenant_id is not None
        async with services(request).db.write() as s:
            ws = await workspaces.create_workspace(s, tenant_id, body.get("name"))
        return JSONResponse(workspace_json(ws, 0), status_code=201)

    return await idempotent(request, go)


@router.get("/workspaces")
async def list_workspaces(request: Request) -> Response:
    async def go() -> Response:
        ctx = await require_key(request, "tenant", "workspace")
        async with services(request).db.read() as s:
            rows = await workspaces.list_workspaces(
                s, None if ctx.is_platform else ctx.tenant_id,
                ctx.workspace_id if ctx.scope == "workspace" else None)
            counts = [await workspaces.inbox_count(s, ws.id) for ws in rows]
        return JSONResponse({"workspaces": [workspace_json(ws, n) for ws, n in zip(rows, counts, strict=True)]})

    return await handle(go)


@router.get("/workspaces/{workspace_id}")
async def get_workspace(workspace_id: str, request: Request) -> Response:
    async def go() -> Response:
        ctx = await require_key(request, "tenant", "workspace")
        ws = await visible_workspace(request, ctx, workspace_id)
        async with services(request).db.read() as s:
            n = await workspaces.inbox_count(s, ws.id)
        return JSONResponse(workspace_json(ws, n))

    return await handle(go)


@router.delete("/workspaces/{workspace_id}")
async def delete_workspace(workspace_id: str, request: Request) -> Response:
    async def go() -> Response:
        ctx = await require_key(request, "tenant")
        async with services(request).db.write() as s:
            await workspaces.delete_workspace(s, workspace_id, None if ctx.is_platform else ctx.tenant_id)
        return JSONResponse({"deleted": True, "id": workspace_id})

    return await handle(go)


@router.post("/workspaces/{workspace_id}/keys")
async def create_key(workspace_id: str, request: Request) -> Response:
    async def go() -> Response:
        c = await require_key(request, "tenant", "workspace")
        ws = await visible_workspace(request, c, workspace_id)
        body = await json_object(request)
        async with services(request).db.write() as s:
            row, key = await workspaces.create_workspace_key(s, ws, body.get("name"), created_by=c.key_id)
        return JSONResponse({**key_json(row), "key": key, "apiKey": key}, status_code=201)

    return await idempotent(request, go)


@router.get("/workspaces/{workspace_id}/keys")
async def list_keys(workspace_id: str, request: Request) -> Response:
    async def go() -> Response:
        ctx = await require_key(request, "tenant", "workspace")
        ws = await visible_workspace(request, ctx, workspace_id)
        async with services(request).db.read() as s:
            rows = await workspaces.list_workspace_keys(s, ws.id)
        return JSONResponse({"keys": [key_json(k) for k in rows]})

    return await handle(go)


@router.delete("/workspaces/{workspace_id}/keys/{key_id}")
async def revoke_key(workspace_id: str, key_id: str, request: Request) -> Response:
    async def go() -> Response:
        ctx = await require_key(request, "tenant", "workspace")
        ws = await visible_workspace(request, ctx, workspace_id)
        async with services(request).db.write() as s:
            await workspaces.revoke_workspace_key(s, ws.id, key_id)
        return JSONResponse({"revoked": True, "id": key_id})

    return await handle(go)

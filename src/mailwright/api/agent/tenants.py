"""`/v1/tenants`: platform keys only (sa_, or MAILWRIGHT_ADMIN_TOKEN). Create returns the
tenant's `tk_` master key once."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from mailwright.api.agent.common import ApiError, handle, idempotent, iso, json_object, require_key
from mailwright.api.auth import services
from mailwright.directory import tenants, workspaces
from mailwright.storage.models import Tenant

router = APIRouter(tags=["agent: tenants"])


def tenant_json(t: Tenant) -> dict[str, Any]:
    return {"id": t.id, "name": t.name, "status": t.status, "plan": t.plan, "createdAt": iso(t.created_at)}


async def _platform(request: Request) -> None:
    ctx = await require_key(request)
    if not ctx.is_platform:
        raise ApiError(403, "FORBIDDEN", "only a platform (sa_) key may manage tenants")


@router.post("/tenants")
async def create_tenant(request: Request) -> Response:
    async def go() -> Response:
        await _platform(request)
        body = await json_object(request)
        svc = services(request)
        async with svc.db.write() as s:
            t, ws, key = await workspaces.create_tenant(s, body.get("name"))
        return JSONResponse({**tenant_json(t), "defaultWorkspaceId": ws.id, "apiKey": key}, status_code=201)

    return await idempotent(request, go)


@router.get("/tenants")
async def list_tenants(request: Request) -> Response:
    async def go() -> Response:
        await _platform(request)
        async with services(request).db.read() as s:
            rows = await workspaces.list_tenants(s)
        return JSONResponse({"tenants": [tenant_json(t) for t in rows]})

    return await handle(go)


@router.get("/tenants/{tenant_id}")
async def get_tenant(tenant_id: str, request: Request) -> Response:
    async def go() -> Response:
        await _platform(request)
        async with services(request).db.read() as s:
            t = await tenants.get_tenant(s, tenant_id)
        return JSONResponse(tenant_json(t))

    return await handle(go)


@router.delete("/tenants/{tenant_id}")
async def delete_tenant(tenant_id: str, request: Request) -> Response:
    async def go() -> Response:
        await _platform(request)
        svc = services(request)
        async with svc.db.read() as s:
            t = await tenants.get_tenant(s, tenant_id)
        if t.name == tenants.DEFAULT_TENANT:
            raise ApiError(403, "FORBIDDEN", "the default tenant cannot be deleted")
        # The reseller dialect's termination (all data deleted, the row kept as a tombstone); a
        # top-level tenant's "reseller" is None, which find_subtenant matches as parent_id IS None.
        await tenants.terminate(svc, t.parent_id, t.id)  # type: ignore[arg-type]
        return JSONResponse({"deleted": True, "id": t.id})

    return await handle(go)

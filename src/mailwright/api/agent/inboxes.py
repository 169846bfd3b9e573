"""`/v1/inboxes`: create (idempotent on username@domain), list, get, delete, rotate-password.

Credentials: `apiKey` (an `ak_` key for the inbox) and `imapPassword` are returned once, with
201. Unlike the hosted service, Mailwright never stores a plaintext mail password (Argon2id
only), so `GET /v1/inboxes/{id}` cannot repeat it: the `imap`/`smtp` objects carry
`"password": null` there, and `POST /v1/inboxes/{id}/rotate-password` issues a new one.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from mailwright.api.agent.common import (
    ApiError,
    connection,
    handle,
    idempotent,
    inbox_json,
    json_object,
    require_key,
)
from mailwright.api.agent.workspaces import platform_tenant
from mailwright.api.auth import services
from mailwright.directory import inboxes

router = APIRouter(tags=["agent: inboxes"])


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes")


@router.post("/inboxes")
async def create_inbox(request: Request) -> Response:
    async def go() -> Response:
        ctx = await require_key(request, "tenant", "workspace")
        body = await json_object(request)
        svc = services(request)
        workspace_id = body.get("workspaceId")
        if workspace_id is not None and not isinstance(workspace_id, str):
            raise ApiError(400, "INVALID_REQUEST", "workspaceId must be a string", field="workspaceId")
        if ctx.scope == "workspace":
            if workspace_id is not None and workspace_id != ctx.workspace_id:
                raise ApiError(403, "FORBIDDEN", "a workspace key creates inboxes in its own workspace only")
            workspace_id = ctx.workspace_id
        tenant_id = await platform_tenant(request, body) if ctx.is_platform else ctx.tenant_id
        assert tenant_id is not None
        made = await inboxes.create_inbox(
            svc, tenant_id, username=body.get("username"), domain=body.get("domain"),
            display_name=body.get("displayName"), workspace_id=workspace_id,
            strict=_flag(request.query_params.get("strict")),
            only_workspace=ctx.workspace_id if ctx.scope == "workspace" else None, created_by=ctx.key_id)
        out = await inbox_json(svc, made.inbox, password=made.password)
        if made.existed:
            return JSONResponse({**out, "existed": True}, status_code=200)
        return JSONResponse({**out, "existed": False, "apiKey": made.api_key, "imapPassword": made.password},
                            status_code=201)

    return await idempotent(request, go)


@router.get("/inboxes")
async def list_inboxes(request: Request) -> Response:
    async def go() -> Response:
        ctx = await require_key(request)
        svc = services(request)
        try:
            limit = min(max(int(request.query_params.get("limit", "100")), 1), 500)
            offset = max(int(request.query_params.get("offset", "0")), 0)
        except ValueError:
            raise ApiError(400, "INVALID_REQUEST", "limit and offset must be integers") from None
        async with svc.db.read() as s:
            rows = await inboxes.list_inboxes(s, ctx, workspace_id=request.query_params.get("workspaceId"),
                                              limit=limit, offset=offset)
        return JSONResponse({"inboxes": [await inbox_json(svc, p) for p in rows]})

    return await handle(go)


@router.get("/inboxes/{inbox_id}")
async def get_inbox(inbox_id: str, request: Request) -> Response:
    async def go() -> Response:
        ctx = await require_key(request)
        svc = services(request)
        async with svc.db.read() as s:
            p = await inboxes.get_inbox(s, inbox_id, ctx)
        return JSONResponse(await inbox_json(svc, p))

    return await handle(go)


@router.patch("/inboxes/{inbox_id}")
async def update_inbox(inbox_id: str, request: Request) -> Response:
    """`displayName`, and `status` ("active" | "paused": a paused inbox cannot send or log in)."""
    async def go() -> Response:
        ctx = await require_key(request, "tenant", "workspace")
        body = await json_object(request)
        svc = services(request)
        fields = {k: body[k] for k in ("displayName", "status") if k in body}
        p = await inboxes.update_inbox(svc, inbox_id, ctx, **{
            "display_name" if k == "displayName" else k: v for k, v in fields.items()})
        return JSONResponse(await inbox_json(svc, p))

    return await handle(go)


@router.delete("/inboxes/{inbox_id}")
async def delete_inbox(inbox_id: str, request: Request) -> Response:
    async def go() -> Response:
        ctx = await require_key(request, "tenant", "workspace")
        await inboxes.delete_inbox(services(request), inbox_id, ctx)
        return JSONResponse({"deleted": True, "id": inbox_id})

    return await handle(go)


@router.post("/inboxes/{inbox_id}/rotate-password")
async def rotate_password(inbox_id: str, request: Request) -> Response:
    async def go() -> Response:
        ctx = await require_key(request)
        svc = services(request)
        p, password = await inboxes.rotate_password(svc, inbox_id, ctx)
        return JSONResponse({"id": p.id, "imapPassword": password, **connection(svc, p, password)})

    return await idempotent(request, go)

"""`/v1/webhooks`: register (secret shown once), list, delete, rotate the secret, delivery log.

A webhook is scoped by the key that made it: a platform key's sees every event, a tenant key's
its tenant's, a workspace key's its workspace's, an inbox key's its inbox's. Signature and
retry rules: see `mailwright.events.webhooks`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from mailwright.api.agent.common import handle, idempotent, iso, json_object, require_key
from mailwright.api.auth import services
from mailwright.directory.apikeys import KeyContext
from mailwright.events import webhooks
from mailwright.storage.models import Webhook, WebhookDelivery

router = APIRouter(tags=["agent: webhooks"])


def scope_of(ctx: KeyContext) -> webhooks.Scope:
    if ctx.is_platform:
        return webhooks.Scope()
    return webhooks.Scope(tenant_id=ctx.tenant_id,
                          workspace_id=ctx.workspace_id if ctx.scope in ("workspace", "inbox") else None,
                          principal_id=ctx.principal_id if ctx.scope == "inbox" else None)


def hook_json(h: Webhook) -> dict[str, Any]:
    return {"id": h.id, "url": h.url, "events": list(h.events or []), "active": h.active,
            "workspaceId": h.workspace_id, "inboxId": h.principal_id, "createdAt": iso(h.created_at)}


def delivery_json(d: WebhookDelivery) -> dict[str, Any]:
    return {"id": str(d.id), "eventId": d.event_id, "eventType": d.event_type, "status": d.status,
            "attempts": d.attempts, "lastStatusCode": d.last_status_code, "lastError": d.last_error,
            "createdAt": iso(d.created_at), "deliveredAt": iso(d.delivered_at),
            "nextAttemptAt": iso(d.next_attempt_at) if d.status == "pending" else None}


@router.post("/webhooks")
async def create_webhook(request: Request) -> Response:
    async def go() -> Response:
        ctx = await require_key(request)
        body = await json_object(request)
        svc = services(request)
        async with svc.db.write() as s:
            hook, secret = await webhooks.create_webhook(svc, s, scope_of(ctx), body.get("url"), body.get("events"),
                                                         created_by=ctx.key_id)
            out = {**hook_json(hook), "secret": secret}
        return JSONResponse(out, status_code=201)

    return await idempotent(request, go)


@router.get("/webhooks")
async def list_webhooks(request: Request) -> Response:
    async def go() -> Response:
        ctx = await require_key(request)
        async with services(request).db.read() as s:
            rows = await webhooks.list_webhooks(s, scope_of(ctx))
        return JSONResponse({"webhooks": [hook_json(h) for h in rows]})

    return await handle(go)


@router.get("/webhooks/{webhook_id}")
async def get_webhook(webhook_id: str, request: Request) -> Response:
    async def go() -> Response:
        ctx = await require_key(request)
        async with services(request).db.read() as s:
            h = await webhooks.get_webhook(s, scope_of(ctx), webhook_id)
        return JSONResponse(hook_json(h))

    return await handle(go)


@router.delete("/webhooks/{webhook_id}")
async def delete_webhook(webhook_id: str, request: Request) -> Response:
    async def go() -> Response:
        ctx = await require_key(request)
        svc = services(request)
        async with svc.db.write() as s:
            await webhooks.delete_webhook(svc, s, scope_of(ctx), webhook_id)
        return JSONResponse({"deleted": True, "id": webhook_id})

    return await handle(go)


@router.post("/webhooks/{webhook_id}/rotate")
async def rotate(webhook_id: str, request: Request) -> Response:
    async def go() -> Response:
        ctx = await require_key(request)
        async with services(request).db.write() as s:
            secret = await webhooks.rotate_secret(s, scope_of(ctx), webhook_id)
        return JSONResponse({"id": webhook_id, "secret": secret})

    return await idempotent(request, go)


@router.get("/webhooks/{webhook_id}/deliveries")
async def deliveries(webhook_id: str, request: Request) -> Response:
    async def go() -> Response:
        ctx = await require_key(request)
        async with services(request).db.read() as s:
            h = await webhooks.get_webhook(s, scope_of(ctx), webhook_id)
            rows = await webhooks.list_deliveries(s, h.id)
        return JSONResponse({"deliveries": [delivery_json(d) for d in rows]})

    return await handle(go)

"""Queue API (management dialect): `/api/queue/messages` list, inspect, retry now, delete.

Auth as the management dialect: the platform key sees every tenant's queue (or one tenant's,
named by `X-Mailwright-Tenant`); a tenant admin key sees its own tenant's messages only, and
another tenant's message is a 404 like a missing one. Errors are the dialect's
`{"error": code, "details": text}`. Thin: every rule is in `delivery.queue`.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from mailwright.api import ratelimit
from mailwright.api.auth import client_ip, key_context, services
from mailwright.api.management.common import error, from_service_error
from mailwright.delivery import queue
from mailwright.directory import tenants
from mailwright.directory.errors import DirectoryError, NotFound

router = APIRouter(prefix="/api/queue", tags=["queue"])

async def _scope(request: Request) -> str | None | JSONResponse:
    """None = all tenants (platform), a tenant id, or the error response to send."""
    ctx = await key_context(request)
    bucket = f"key:{ctx.key_id or ctx.prefix}" if ctx is not None else f"ip:{client_ip(request)}"
    wait = ratelimit.check(request, bucket)  # the management dialect's per-key budget
    if wait is not None:
        return error("tooManyRequests", 429, f"rate limit exceeded, retry in {int(wait)} s",
                     headers={"Retry-After": str(int(wait))})
    if ctx is None:
        return error("unauthorized", 401, "missing, invalid, expired or revoked API key",
                     headers={"WWW-Authenticate": "Bearer"})
    if ctx.is_platform:
        named = request.headers.get("x-mailwright-tenant")
        if not named:
            return None
        async with services(request).db.read() as s:
            try:
                return (await tenants.get_tenant(s, named.strip())).id
            except NotFound as exc:
                return from_service_error(exc)
    if ctx.scope != "tenant" or ctx.tenant_id is None:
        return error("forbidden", 403, "this key cannot use the queue API")
    return ctx.tenant_id


def _id(raw: str) -> int | None:
    return int(raw) if raw.isdigit() and len(raw) < 19 else None


def _not_found(raw: str) -> JSONResponse:
    return error("notFound", 404, f"queued message {raw} not found", field="id", value=raw)


def _int_param(request: Request, name: str, default: int, maximum: int) -> int | JSONResponse:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit():
        return error("invalid", 400, f"{name} must be a non-negative integer", field=name)
    return min(int(raw), maximum)


@router.get("/messages")
async def list_queue(request: Request) -> JSONResponse:
    scope = await _scope(request)
    if isinstance(scope, JSONResponse):
        return scope
    limit = _int_param(request, "limit", 100, 1000)
    offset = _int_param(request, "offset", 0, 10**12)
    if isinstance(limit, JSONResponse):
        return limit
    if isinstance(offset, JSONResponse):
        return offset
    async with services(request).db.read() as s:
        items, total = await queue.list_messages(s, scope, limit=limit, offset=offset)
    return JSONResponse({"data": {"items": [i.as_dict() for i in items], "total": total}})


@router.get("/messages/{queue_id}")
async def show_queue_message(queue_id: str, request: Request) -> JSONResponse:
    scope = await _scope(request)
    if isinstance(scope, JSONResponse):
        return scope
    qid = _id(queue_id)
    if qid is None:
        return _not_found(queue_id)
    try:
        async with services(request).db.read() as s:
            entry = await queue.get_message(s, qid, scope)
    except DirectoryError as exc:
        return from_service_error(exc)
    return JSONResponse({"data": entry.as_dict()})


async def _retry(queue_id: str, request: Request) -> JSONResponse:
    scope = await _scope(request)
    if isinstance(scope, JSONResponse):
        return scope
    qid = _id(queue_id)
    if qid is None:
        return _not_found(queue_id)
    try:
        entry = await queue.retry_now(services(request), qid, scope)
    except DirectoryError as exc:
        return from_service_error(exc)
    return JSONResponse({"data": entry.as_dict()})


@router.post("/messages/{queue_id}/retry")
async def retry_queue_message(queue_id: str, request: Request) -> JSONResponse:
    """Make every pending recipient due now (like `postqueue -i`)."""
    return await _retry(queue_id, request)


@router.patch("/messages/{queue_id}")
async def patch_queue_message(queue_id: str, request: Request) -> JSONResponse:
    """`{"retry": true}` (or an empty body): retry now; the only change a queued message takes."""
    raw = await request.body()
    if raw.strip():
        try:
            body: Any = json.loads(raw)
        except ValueError:
            return error("other", 400, "request body is not valid JSON")
        if not isinstance(body, dict) or set(body) - {"retry"} or body.get("retry", True) is not True:
            return error("unsupported", 400, 'the only supported change is {"retry": true}')
    return await _retry(queue_id, request)


@router.delete("/messages/{queue_id}")
async def delete_queue_message(queue_id: str, request: Request) -> JSONResponse:
    """Drop the message without a bounce (like `postsuper -d`)."""
    scope = await _scope(request)
    if isinstance(scope, JSONResponse):
        return scope
    qid = _id(queue_id)
    if qid is None:
        return _not_found(queue_id)
    try:
        await queue.delete_message(services(request), qid, scope)
    except DirectoryError as exc:
        return from_service_error(exc)
    return JSONResponse({"data": None})

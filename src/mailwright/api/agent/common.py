"""What every agent-dialect router shares: the error shape, key checks, inbox rendering.

Errors are `{"error": "<message>", "code": "<CODE>"}` (the reference's 403/409 shape) with
extra fields where the reference names them (USERNAME_TAKEN). Codes: UNAUTHORIZED 401,
FORBIDDEN 403, PLAN_LIMIT_REACHED 403, INBOX_PAUSED 403, NOT_FOUND 404, INVALID_REQUEST 400,
USERNAME_TAKEN 409, CONFLICT 409, RATE_LIMITED 429, RELAY_ERROR 502.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from mailwright.api import idempotency
from mailwright.api.auth import key_context, services
from mailwright.directory import inboxes
from mailwright.directory.apikeys import KeyContext
from mailwright.directory.errors import DirectoryError
from mailwright.services import Services
from mailwright.storage.models import Principal

CODES = {
    "notFound": (404, "NOT_FOUND"),
    "fieldAlreadyExists": (409, "CONFLICT"),
    "forbidden": (403, "FORBIDDEN"),
    "fieldMissing": (400, "INVALID_REQUEST"),
    "invalid": (400, "INVALID_REQUEST"),
    "limitReached": (403, "PLAN_LIMIT_REACHED"),
    "quotaExceeded": (403, "QUOTA_EXCEEDED"),
    "notEmpty": (409, "CONFLICT"),
    "usernameTaken": (409, "USERNAME_TAKEN"),
}


# The reference's prefix table; other tenant-scoped tokens (tm_pro_, mxm_, rk_) belong to other dialects.
AGENT_PREFIXES = ("sa_", "tk_", "wk_", "ak_", "env")


class ApiError(Exception):
    """Raised inside handlers; rendered by `handle`."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra


def error(status: int, code: str, message: str, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, "code": code, **extra}, status_code=status, headers=headers)


def idem_error(status: int, code: str, message: str) -> Response:
    return error(status, code.upper(), message)


def from_service_error(exc: DirectoryError) -> JSONResponse:
    status, code = CODES.get(exc.code, (400, "INVALID_REQUEST"))
    extra: dict[str, Any] = {}
    if isinstance(exc, inboxes.UsernameTaken):
        extra = {"requestedUsername": exc.requested, "attemptedUsername": exc.attempted, "domain": exc.domain}
    elif exc.field:
        extra["field"] = exc.field
    return error(status, code, exc.message, **extra)


async def handle(fn: Callable[[], Awaitable[Response]]) -> Response:
    try:
        return await fn()
    except ApiError as exc:
        return error(exc.status, exc.code, exc.message, **exc.extra)
    except DirectoryError as exc:
        return from_service_error(exc)


async def require_key(request: Request, *scopes: str) -> KeyContext:
    """The caller's key; 401 without a valid one, 403 when its tier is not among `scopes`
    (platform keys pass everywhere)."""
    ctx = await key_context(request)
    if ctx is None:
        raise ApiError(401, "UNAUTHORIZED", "missing, invalid or revoked API key")
    if ctx.scope not in ("platform", "tenant", "workspace", "inbox") or ctx.prefix not in AGENT_PREFIXES:
        raise ApiError(403, "FORBIDDEN", "this key cannot use the inbox API")
    if scopes and not ctx.is_platform and ctx.scope not in scopes:
        raise ApiError(403, "FORBIDDEN", f"a {ctx.prefix} key cannot do this")
    return ctx


async def json_object(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise ApiError(400, "INVALID_REQUEST", "request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "INVALID_REQUEST", "request body must be a JSON object")
    return body


async def idempotent(request: Request, fn: Callable[[], Awaitable[Response]]) -> Response:
    """`handle(fn)` under the caller's Idempotency-Key (no key presented: nothing to replay)."""
    ctx = await key_context(request)
    if ctx is None:
        return await handle(fn)
    return await idempotency.idempotent(request, ctx.key_id, lambda: handle(fn), idem_error)


def iso(d: Any) -> str | None:
    return d.isoformat().replace("+00:00", "Z") if d is not None else None


def connection(svc: Services, p: Principal, password: str | None) -> dict[str, Any]:
    st = svc.settings
    imap_tls = bool(st.imaps_port)
    imap = {"host": st.hostname, "port": st.imaps_port if imap_tls else st.imap_port, "tls": imap_tls,
            "username": p.name, "password": password}
    smtp = {"host": st.hostname, "port": st.submission_port or st.submissions_port,
            "starttls": bool(st.submission_port), "username": p.name, "password": password}
    return {"imap": imap, "smtp": smtp}


async def inbox_json(svc: Services, p: Principal, *, password: str | None = None) -> dict[str, Any]:
    async with svc.db.read() as s:
        addrs = await inboxes.addresses(s, p.id)
    primary = next((a for a, is_primary in addrs if is_primary), p.name)
    username, _, domain = p.name.partition("@")
    return {
        "id": p.id,
        "email": primary,
        "canonicalEmail": p.name,
        "username": username,
        "domain": domain,
        "displayName": p.display_name,
        "workspaceId": p.workspace_id,
        "status": p.status,
        "addresses": [{"address": a, "isPrimary": is_primary} for a, is_primary in addrs],
        **connection(svc, p, password),
        "createdAt": iso(p.created_at),
    }


async def inbox_for(request: Request, inbox_id: str, ctx: KeyContext) -> Principal:
    svc = services(request)
    async with svc.db.read() as s:
        return await inboxes.get_inbox(s, inbox_id, ctx)

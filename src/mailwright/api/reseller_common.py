"""What the reseller dialect's routers share: its envelope, its error codes, body parsing.

Every answer is `{"success": true, "data": ...}` or `{"success": false, "error": {"code",
"message"}}` (the Mailbux reseller document's shape), for expected errors and bad input alike.
Service errors map to codes here, once:

| service error          | HTTP | code                  |
|------------------------|------|-----------------------|
| PlanUpgradeRequired    | 403  | PLAN_UPGRADE_REQUIRED |
| PoolExceeded           | 422  | QUOTA_EXCEEDED        |
| TenantLimitReached     | 422  | TENANT_LIMIT          |
| QuotaBelowUsage        | 422  | QUOTA_BELOW_USAGE     |
| NotFound               | 404  | NOT_FOUND (TENANT_NOT_FOUND for tenants) |
| AlreadyExists          | 409  | ALREADY_EXISTS        |
| Forbidden              | 403  | FORBIDDEN             |
| Invalid / MissingField | 400  | VALIDATION_ERROR      |

plus 400 INVALID_JSON (body is not a JSON object), 401 UNAUTHORIZED (missing, unknown, revoked
or expired key, or a key of a suspended account) and 403 FORBIDDEN (a valid key of another tier).
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from mailwright.api.auth import client_ip, key_context, services
from mailwright.directory import resellers
from mailwright.directory.errors import (
    AlreadyExists,
    DirectoryError,
    Forbidden,
    Invalid,
    MissingField,
    NotFound,
)
from mailwright.directory.tenants import Actor, PlanUpgradeRequired, PoolExceeded, QuotaBelowUsage, TenantLimitReached

_ERRORS: list[tuple[type[DirectoryError], int, str]] = [
    (PlanUpgradeRequired, 403, "PLAN_UPGRADE_REQUIRED"),
    (PoolExceeded, 422, "QUOTA_EXCEEDED"),
    (TenantLimitReached, 422, "TENANT_LIMIT"),
    (QuotaBelowUsage, 422, "QUOTA_BELOW_USAGE"),
    (NotFound, 404, "NOT_FOUND"),
    (AlreadyExists, 409, "ALREADY_EXISTS"),
    (Forbidden, 403, "FORBIDDEN"),
    (MissingField, 400, "VALIDATION_ERROR"),
    (Invalid, 400, "VALIDATION_ERROR"),
]


class BadBody(Exception):
    """The request body is not what the endpoint takes (rendered as 400)."""


def ok(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse({"success": True, "data": data}, status_code=status)


def fail(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"success": False, "error": {"code": code, "message": message}}, status_code=status)


def from_error(exc: DirectoryError, *, not_found: str = "NOT_FOUND") -> JSONResponse:
    for cls, status, code in _ERRORS:
        if isinstance(exc, cls):
            return fail(status, not_found if cls is NotFound else code, exc.message)
    return fail(400, "BAD_REQUEST", exc.message)


async def json_object(request: Request, *, optional: bool = False) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        if optional:
            return {}
        raise BadBody("request body must be a JSON object")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadBody("request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadBody("request body must be a JSON object")
    return body


def bad_body(exc: BadBody) -> JSONResponse:
    return fail(400, "INVALID_JSON", str(exc))


async def caller(request: Request, scope: str) -> tuple[Actor, str] | JSONResponse:
    """(audit actor, tenant id of the caller) for a key of `scope`, or the 401/403 to send.

    For the platform scope the tenant id is "" (the platform is no tenant).
    """
    ctx = await key_context(request)
    if ctx is None:
        return fail(401, "UNAUTHORIZED", "missing, invalid or revoked API key (send it as X-Api-Key)")
    if scope == "platform":
        if not ctx.is_platform:
            return fail(403, "FORBIDDEN", "this endpoint needs the platform admin key")
        return Actor(log_tenant_id=None, name="platform", key_id=ctx.key_id, source_ip=client_ip(request)), ""
    if ctx.scope != scope or ctx.tenant_id is None:
        return fail(403, "FORBIDDEN", f"this endpoint needs a {scope} API key")
    svc = services(request)
    async with svc.db.read() as s:
        try:
            name = (await resellers.get_reseller(s, ctx.tenant_id)).name
        except NotFound:
            return fail(403, "FORBIDDEN", f"this endpoint needs a {scope} API key")
    return Actor(log_tenant_id=ctx.tenant_id, name=name, key_id=ctx.key_id, source_ip=client_ip(request)), \
        ctx.tenant_id

"""What every management route shares: auth and tenant scope, rate limit, JSON bodies, errors.

Decisions (where the Mailbux guide is silent, following Stalwart):

* **Auth**: `Authorization: Bearer <key>` (also `X-Api-Key`). A tenant admin key (`tk_`, scope
  tenant) acts on its own tenant only. The platform key (`sa_` or `MAILWRIGHT_ADMIN_TOKEN`) acts
  on the tenant named by the `X-Mailwright-Tenant` header (tenant id or name), or on the
  `default` tenant when none is named. Any other key (workspace, inbox, domain tokens) gets 403
  forbidden. A missing, unknown, revoked or expired key gets 401 `{"error": "unauthorized"}`.
* **Another tenant's objects** are reported exactly like missing ones: 404 `notFound`, on every
  route (existence must not leak). Creating an address in another tenant's domain, or naming one
  as a list member, is 400 `invalid` (the address is "not a domain of this tenant"). The one
  unavoidable leak is a domain name: names are unique platform-wide, so adding a domain another
  tenant has answers 409 `fieldAlreadyExists`, as Stalwart does.
* **Rate limit**: `api_rate_per_minute` per key (per client IP for requests without a valid key,
  so guessing keys is throttled too): 429 `{"error": "tooManyRequests"}` with `Retry-After`.
  The platform operator's key is exempt (bulk provisioning and migrations run with it; it is
  the operator's own server).
* **Errors** are `{"error": code, "details": text, "field"?: name, "value"?: value}` with codes
  `fieldAlreadyExists` 409, `fieldMissing` 400, `notFound` 404, `forbidden` 403, `unsupported`
  400 (unknown field or type), `invalid` 400 (a value of the wrong type or form: bad domain name,
  bad address, short password), `limitReached` 403 (creating a domain or an individual past the
  tenant's or its reseller's `max_domains`/`max_mailboxes`, `directory.limits`; `field` is
  "domains" or "mailboxes", `value` the limit; 403 as the guide's "permission denied" class,
  since Stalwart's API has no code for it; lists are never counted), `other` 400 (malformed
  JSON) and `unauthorized` 401. The limits themselves are not settable here (a tenant key must
  not raise its own plan): `mailwright tenant limits` or `/api/admin/tenants` (platform key).
* **Unknown fields are rejected** (400 `unsupported`, naming the field), as Stalwart does: a typo
  such as `"secret"` must not silently create an account without a password. Stalwart's own
  principal fields that Mailwright does not implement (`memberOf`, `lists`, `urls`, permission
  lists, ...) are accepted when empty, so Stalwart clients that send them blank work.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, ParamSpec

from fastapi import Depends, HTTPException, Request
from fastapi.responses import JSONResponse

from mailwright.api import ratelimit
from mailwright.api.auth import client_ip, key_context, services
from mailwright.directory import tenants
from mailwright.directory.errors import DirectoryError, NotFound
from mailwright.directory.tenants import Actor

STATUS = {
    "notFound": 404, "fieldAlreadyExists": 409, "forbidden": 403, "fieldMissing": 400, "invalid": 400,
    "unsupported": 400, "other": 400, "limitReached": 403, "quotaExceeded": 403,
}


class DialectError(Exception):
    """Raised by route code for an error it renders itself."""

    def __init__(self, code: str, details: str, *, field: str | None = None, status: int | None = None) -> None:
        super().__init__(details)
        self.code = code
        self.details = details
        self.field = field
        self.status = status or STATUS.get(code, 400)


def error(code: str, status: int, details: str, headers: dict[str, str] | None = None, **extra: Any
          ) -> JSONResponse:
    return JSONResponse({"error": code, "details": details, **extra}, status_code=status, headers=headers)


def from_service_error(exc: DirectoryError) -> JSONResponse:
    extra: dict[str, Any] = {"field": exc.field} if exc.field else {}
    if isinstance(exc.value, str | int) and not isinstance(exc.value, bool):
        extra["value"] = exc.value
    return error(exc.code, STATUS.get(exc.code, 400), exc.message, **extra)


P = ParamSpec("P")


def dialect_errors(fn: Callable[P, Awaitable[Any]]) -> Callable[P, Awaitable[Any]]:
    """Render service and dialect errors raised by a route in this dialect's shape."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
        try:
            return await fn(*args, **kwargs)
        except DirectoryError as exc:
            return from_service_error(exc)
        except DialectError as exc:
            extra: dict[str, Any] = {"field": exc.field} if exc.field else {}
            return error(exc.code, exc.status, exc.details, **extra)

    return wrapper


def _refuse(status: int, code: str, details: str, headers: dict[str, str] | None = None) -> HTTPException:
    return HTTPException(status, detail={"error": code, "details": details}, headers=headers)


async def tenant_scope(request: Request) -> str:
    """The tenant id this request acts on (a FastAPI dependency); refusals become 401/403/404/429."""
    ctx = await key_context(request)
    bucket = f"key:{ctx.key_id or ctx.prefix}" if ctx is not None else f"ip:{client_ip(request)}"
    wait = None if ctx is not None and ctx.is_platform else ratelimit.check(request, bucket)
    if wait is not None:
        raise _refuse(429, "tooManyRequests", f"rate limit exceeded, retry in {int(wait)} s",
                      headers={"Retry-After": str(int(wait))})
    if ctx is None:
        raise _refuse(401, "unauthorized", "missing, invalid, expired or revoked API key",
                      headers={"WWW-Authenticate": "Bearer"})
    if ctx.is_platform:
        named = request.headers.get("x-mailwright-tenant")
        svc = services(request)
        try:
            async with svc.db.read() as s:
                if named:
                    return (await tenants.get_tenant(s, named.strip())).id
                try:  # a read first: no write transaction (and fsync) per request
                    return (await tenants.get_tenant(s, tenants.DEFAULT_TENANT)).id
                except NotFound:
                    pass
            async with svc.db.write() as s:
                return (await tenants.ensure_default_tenant(s)).id
        except NotFound as exc:
            raise _refuse(404, "notFound", exc.message) from None
    if ctx.scope != "tenant" or ctx.tenant_id is None:
        raise _refuse(403, "forbidden", "this key cannot use the management API")
    return ctx.tenant_id


Tenant = Annotated[str, Depends(tenant_scope)]


async def caller(request: Request, tenant: Tenant) -> Actor:
    """Who is acting, for the tenant's audit log (writes record the key, never its secret)."""
    ctx = await key_context(request)
    name = "platform admin" if ctx is None or ctx.is_platform else f"{ctx.prefix} API key"
    return Actor(log_tenant_id=tenant, name=name, key_id=ctx.key_id if ctx else None, source_ip=client_ip(request))


Caller = Annotated[Actor, Depends(caller)]

# Shared OpenAPI metadata: every route may answer these.
RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "invalid request: `{error: invalid|fieldMissing|unsupported|other, details, field?}`"},
    401: {"description": "missing, invalid or revoked key: `{error: unauthorized}`"},
    403: {"description": "the key may not use this API: `{error: forbidden}`"},
    404: {"description": "no such object in this tenant: `{error: notFound}`"},
    429: {"description": "rate limited: `{error: tooManyRequests}`, with Retry-After"},
}


async def json_body(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        raise DialectError("other", "a JSON request body is required")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise DialectError("other", "request body is not valid JSON") from None
    if _has_nul(body):  # PostgreSQL text cannot hold NUL, and no field of this API needs one
        raise DialectError("invalid", "strings must not contain NUL characters")
    return body


def _has_nul(value: Any, depth: int = 0) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if depth > 20:
        return False
    if isinstance(value, dict):
        return any(_has_nul(k, depth + 1) or _has_nul(v, depth + 1) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v, depth + 1) for v in value)
    return False


def want_str(body: dict[str, Any], field: str, *, required: bool = False) -> str | None:
    value = body.get(field)
    if value is None:
        if required:
            raise DialectError("fieldMissing", f"field {field!r} is required", field=field)
        return None
    if not isinstance(value, str):
        raise DialectError("invalid", f"field {field!r} must be a string", field=field)
    if required and not value.strip():
        raise DialectError("fieldMissing", f"field {field!r} is required", field=field)
    return value


def want_str_list(body: dict[str, Any], field: str) -> list[str] | None:
    value = body.get(field)
    if value is None:
        return None
    if isinstance(value, str):  # Stalwart accepts a single value where a list is expected
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DialectError("invalid", f"field {field!r} must be a list of strings", field=field)
    return value


def want_int(body: dict[str, Any], field: str) -> int | None:
    value = body.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise DialectError("invalid", f"field {field!r} must be a non-negative 64-bit integer", field=field)
    return value


def reject_unknown(body: dict[str, Any], known: set[str], tolerated_if_empty: frozenset[str] = frozenset()) -> None:
    for key, value in body.items():
        if key in known:
            continue
        if key in tolerated_if_empty and not value:
            continue
        raise DialectError("unsupported", f"unsupported field {key!r}", field=key)


def query_int(request: Request, name: str, default: int | None) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise DialectError("invalid", f"query parameter {name!r} must be an integer", field=name) from None
    if not 0 <= value < 2**31:
        raise DialectError("invalid", f"query parameter {name!r} is out of range", field=name)
    return value

"""What every mail.cx-dialect route shares: the error shape, credentials, per-IP limits.

Errors are `{"error": "<code>", "message": "<human text>"}` with the documented codes:
400 `invalid_address`, 403 `account_limit_reached`, 409 `address_taken`, 401
`invalid_credentials`, and for the Pro API 400 `invalid_domain`, 403 `domain_limit_reached`,
409 `domain_already_exists`. Where the reference is silent: 401 `unauthorized` (missing, bad,
expired or revoked token), 404 `not_found`, 429 `rate_limited` (+ `Retry-After`), 400
`invalid_password` (shorter than 6), 400 `invalid_request` (malformed JSON or a wrong field
type), 403 `forbidden` (a valid credential of the wrong kind).

Anonymous sign-up (`POST /api/accounts`) and sign-in (`POST /api/token`) are limited per client
IP with token buckets (`signup_rate_per_minute`, `token_rate_per_minute`), and sign-ups per IP
per UTC day (`signup_max_per_ip_per_day`, 403 `account_limit_reached`). Both are counted in
memory per process (like nginx `limit_req` without a shared zone): with N workers an IP gets up
to N times the allowance, and a restart forgets the day's counts. Behind a reverse proxy the
client IP is the proxy's unless the server is started with the proxy-headers option.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from mailwright.api.auth import client_ip, key_context, presented_key, services
from mailwright.api.ratelimit import RateLimiter
from mailwright.directory import jwt_tokens, selfservice
from mailwright.directory.errors import (
    AlreadyExists,
    DirectoryError,
    Forbidden,
    Invalid,
    LimitReached,
    MissingField,
    NotFound,
    QuotaExceeded,
)
from mailwright.directory.selfservice import ProContext, SelfServiceError
from mailwright.storage.models import Principal

STATUS = {
    "invalid_address": 400, "invalid_password": 400, "invalid_domain": 400, "invalid_request": 400,
    "account_limit_reached": 403, "domain_limit_reached": 403, "forbidden": 403, "quota_exceeded": 403,
    "address_taken": 409, "domain_already_exists": 409, "conflict": 409,
    "invalid_credentials": 401, "unauthorized": 401, "not_found": 404, "rate_limited": 429,
}


class McxError(Exception):
    def __init__(self, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.headers = headers


def error(code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=STATUS.get(code, 400), headers=headers)


def _code_for(exc: DirectoryError) -> str:
    if isinstance(exc, SelfServiceError):
        return exc.code
    if isinstance(exc, NotFound):
        return "not_found"
    if isinstance(exc, AlreadyExists):
        return "conflict"
    if isinstance(exc, Forbidden):
        return "forbidden"
    if isinstance(exc, LimitReached):
        return "account_limit_reached"
    if isinstance(exc, QuotaExceeded):
        return "quota_exceeded"
    if isinstance(exc, Invalid | MissingField):
        return "invalid_request"
    return "invalid_request"


async def handle(fn: Callable[[], Awaitable[Response]]) -> Response:
    """Run a route body, rendering this dialect's and the services' errors in the mail.cx shape."""
    try:
        return await fn()
    except McxError as exc:
        return error(exc.code, exc.message, exc.headers)
    except DirectoryError as exc:
        return error(_code_for(exc), exc.message)


async def json_object(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw) if raw.strip() else {}
    except (ValueError, UnicodeDecodeError):
        raise McxError("invalid_request", "request body must be a JSON object") from None
    if not isinstance(body, dict):
        raise McxError("invalid_request", "request body must be a JSON object")
    return body


def iso(d: dt.datetime | None) -> str | None:
    if d is None:
        return None
    if d.tzinfo is None:
        d = d.replace(tzinfo=dt.UTC)
    return d.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


# ------------------------------------------------------------------------------------ credentials


def unauthorized() -> McxError:
    return McxError("unauthorized", "missing, invalid or expired token", {"WWW-Authenticate": "Bearer"})


async def jwt_account(request: Request) -> Principal | None:
    """The account of a presented mail.cx JWT; None when no JWT was presented."""
    token = presented_key(request)
    if not token or not jwt_tokens.looks_like_jwt(token):
        return None
    svc = services(request)
    claims = jwt_tokens.decode(svc.settings, token)
    account = await selfservice.account_for_claims(svc, claims) if claims is not None else None
    if account is None:
        raise unauthorized()
    return account


async def require_account(request: Request) -> Principal:
    account = await jwt_account(request)
    if account is None:
        raise unauthorized()
    return account


async def optional_pro(request: Request) -> ProContext | None:
    """A Pro credential (`tm_pro_` token or a Pro owner's JWT), None when none was presented;
    a presented credential that is bad, or not Pro, is refused."""
    token = presented_key(request)
    if not token:
        return None
    if jwt_tokens.looks_like_jwt(token):
        account = await require_account(request)
        pro = selfservice.pro_context_of(account)
        if pro is None:
            raise McxError("forbidden", "this account is not a Pro account")
        return pro
    ctx = await key_context(request)
    if ctx is None:
        raise unauthorized()
    pro = selfservice.pro_context_for_key(ctx)
    if pro is None:
        raise McxError("forbidden", "a Pro API token (tm_pro_...) is required")
    return pro


async def require_pro(request: Request) -> ProContext:
    pro = await optional_pro(request)
    if pro is None:
        raise unauthorized()
    return pro


# ------------------------------------------------------------------------------------ per-IP limits


def _limiter(request: Request, name: str, per_minute: int) -> RateLimiter:
    state = request.app.state
    attr = f"mailcx_{name}_limiter"
    lim: RateLimiter | None = getattr(state, attr, None)
    if lim is None or lim.per_minute != per_minute:
        lim = RateLimiter(per_minute)
        setattr(state, attr, lim)
    return lim


def check_rate(request: Request, name: str, per_minute: int) -> None:
    wait = _limiter(request, name, per_minute).hit(f"ip:{client_ip(request)}")
    if wait is not None:
        secs = int(wait)
        raise McxError("rate_limited", f"too many requests, retry in {secs} s", {"Retry-After": str(secs)})


_MAX_IPS = 100_000


def _day_counts(request: Request) -> dict[str, tuple[str, int]]:
    counts: dict[str, tuple[str, int]] | None = getattr(request.app.state, "mailcx_signups_per_ip", None)
    if counts is None:
        counts = {}
        request.app.state.mailcx_signups_per_ip = counts
    return counts


def check_daily_cap(request: Request) -> None:
    cap = services(request).settings.signup_max_per_ip_per_day
    if cap <= 0:
        return
    today = dt.datetime.now(dt.UTC).date().isoformat()
    day, n = _day_counts(request).get(str(client_ip(request)), (today, 0))
    if day == today and n >= cap:
        raise McxError("account_limit_reached", "too many accounts created from this address today")


def count_signup(request: Request) -> None:
    counts = _day_counts(request)
    today = dt.datetime.now(dt.UTC).date().isoformat()
    ip = str(client_ip(request))
    day, n = counts.get(ip, (today, 0))
    if len(counts) >= _MAX_IPS and ip not in counts:
        for k in [k for k, (d, _) in counts.items() if d != today]:
            del counts[k]
        if len(counts) >= _MAX_IPS:
            counts.clear()
    counts[ip] = (today, n + 1 if day == today else 1)

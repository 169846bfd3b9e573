"""`/api/accounts`, `/api/token`, `/api/me`, `/api/account`: sign-up, sign-in, who am I, delete.

`GET /api/me` is shared with the other dialects: the response is chosen by the credential
presented. A mail.cx JWT gets the mailbox info `{id, address, role, quota, used, created_at}`;
any API key (sa_/rk_/tk_/wk_/ak_/mxm_/tm_pro_, or the admin token) gets the manager dialect's
"who am I" `{"success": true, "data": {key_id, scope, prefix, tenant_id, workspace_id,
principal_id, grants, admin}}`; nothing (or a bad credential) is a 401 in the mail.cx shape.

Sign-in failures feed the same failed-login throttle as IMAP/POP3/SMTP AUTH (per IP and per
address): once locked out, `/api/token` answers 429 `rate_limited` without checking the password.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from mailwright.api.auth import client_ip, key_context, presented_key, services
from mailwright.api.mailcx.common import (
    McxError,
    check_daily_cap,
    check_rate,
    count_signup,
    handle,
    iso,
    json_object,
    jwt_account,
    optional_pro,
    require_account,
    unauthorized,
)
from mailwright.directory import jwt_tokens, selfservice
from mailwright.directory.selfservice import ProContext, SelfServiceError
from mailwright.storage.models import Principal

router = APIRouter(prefix="/api", tags=["mail.cx: accounts"])


def _token_body(request: Request, p: Principal) -> dict[str, Any]:
    token = jwt_tokens.issue(services(request).settings, p.id, p.name)
    return {"id": p.id, "address": p.name, "token": token}


def me_json(p: Principal) -> dict[str, Any]:
    return {"id": p.id, "address": p.name, "role": p.role, "quota": int(p.quota_bytes or 0),
            "used": int(p.used_bytes or 0), "created_at": iso(p.created_at)}


@router.post("/accounts", status_code=201)
async def create_account(request: Request) -> Response:
    async def go() -> Response:
        svc = services(request)
        pro: ProContext | None
        try:
            pro = await optional_pro(request)
        except McxError as exc:
            token = presented_key(request) or ""
            if exc.code != "forbidden" and not jwt_tokens.looks_like_jwt(token):
                raise  # a bad or revoked Pro token: the caller meant Pro, say it failed
            pro = None  # a mailbox's own (even stale) JWT: signs up like anyone else
        if pro is None:
            check_rate(request, "signup", svc.settings.signup_rate_per_minute)
            check_daily_cap(request)
        body = await json_object(request)
        p = await selfservice.sign_up(svc, body.get("address"), body.get("password"), pro=pro)
        if pro is None:
            count_signup(request)
        return JSONResponse(_token_body(request, p), status_code=201)

    return await handle(go)


@router.post("/token")
async def sign_in(request: Request) -> Response:
    async def go() -> Response:
        svc = services(request)
        check_rate(request, "token", svc.settings.token_rate_per_minute)
        body = await json_object(request)
        address = body.get("address") if isinstance(body.get("address"), str) else None
        ip = client_ip(request)
        wait = svc.login_throttle.blocked(ip, address)
        if wait > 0:  # the same failed-login lockout as IMAP/POP3/SMTP AUTH
            secs = max(1, int(wait + 0.999))
            raise McxError("rate_limited", f"too many failed sign-ins, retry in {secs} s", {"Retry-After": str(secs)})
        try:
            p = await selfservice.sign_in(svc, body.get("address"), body.get("password"))
        except SelfServiceError:
            svc.login_throttle.failure(ip, address)
            raise
        svc.login_throttle.success(ip, address)
        return JSONResponse(_token_body(request, p))

    return await handle(go)


@router.get("/me")
async def me(request: Request) -> Response:
    async def go() -> Response:
        account = await jwt_account(request)
        if account is not None:
            return JSONResponse(me_json(account))
        if not presented_key(request):
            raise unauthorized()
        ctx = await key_context(request)
        if ctx is None:
            raise unauthorized()
        return JSONResponse({"success": True, "data": {
            "key_id": ctx.key_id, "scope": ctx.scope, "prefix": ctx.prefix, "tenant_id": ctx.tenant_id,
            "workspace_id": ctx.workspace_id, "principal_id": ctx.principal_id,
            "grants": ctx.permissions, "admin": ctx.is_platform,
        }})

    return await handle(go)


@router.delete("/account", status_code=204)
async def delete_account(request: Request) -> Response:
    async def go() -> Response:
        account = await require_account(request)
        await selfservice.delete_account(services(request), account.id)
        return Response(status_code=204)

    return await handle(go)

"""Tenant admin login: the generated username/password → a management API bearer key.

`POST /api/auth/login {"username": "user38472615", "password": "..."}` →
`{"success": true, "data": {"token": "tk_...", "token_type": "Bearer", "tenant_id", "tenant_name",
"expires_at"}}`. The token is a `tk_` key scoped to that tenant (12 hours), used as
`Authorization: Bearer` on the management API (`/api/principal` ...) — so the tenant admin adds
domains and mailboxes exactly as the management guide shows. The web dashboard will use the
same endpoint.

Errors, in the reseller dialect's shape (the login belongs to the reseller's product):
400 INVALID_JSON / VALIDATION_ERROR, 401 INVALID_CREDENTIALS (wrong name or password and
suspended or terminated tenant alike: the answer must not reveal which), 429 TOO_MANY_ATTEMPTS
(failed-login throttle per IP and per username, shared with the mail protocols' policy).
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from mailwright.api.auth import client_ip, services
from mailwright.api.reseller_common import BadBody, bad_body, fail, json_object, ok
from mailwright.directory import tenants

router = APIRouter(prefix="/api/auth", tags=["tenant login"])


@router.post("/login")
async def login(request: Request) -> JSONResponse:
    svc = services(request)
    try:
        body = await json_object(request)
    except BadBody as exc:
        return bad_body(exc)
    username, password = body.get("username"), body.get("password")
    if not isinstance(username, str) or not username or not isinstance(password, str) or not password:
        return fail(400, "VALIDATION_ERROR", "fields 'username' and 'password' are required strings")
    ip = client_ip(request)
    if svc.login_throttle.blocked(ip, username):
        return fail(429, "TOO_MANY_ATTEMPTS", "too many failed logins, try again later")
    grant = await tenants.admin_login(svc, username, password, source_ip=ip)
    if grant is None:
        svc.login_throttle.failure(ip, username)
        await asyncio.sleep(0.2)
        return fail(401, "INVALID_CREDENTIALS", "invalid username or password")
    svc.login_throttle.success(ip, username)
    return ok({"token": grant.key, "token_type": "Bearer", "tenant_id": grant.tenant_id,
               "tenant_name": grant.tenant_name, "expires_at": grant.expires_at.isoformat()})

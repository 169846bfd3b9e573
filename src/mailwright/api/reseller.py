"""The reseller dialect (Mailbux Reseller API): `/api/user/...` with an `X-Api-Key: rk_...` key.

Thin: authenticate the reseller key, parse, call `directory.tenants` / `directory.resellers`,
render `{"success": true, "data": ...}` or the document's error shape (see reseller_common).

Endpoints (the document's, plus what a billing integration needs around them):
- `GET  /api/user/tenants` — live sub-tenants with `email_count` (email accounts), `alias_count`,
  `domain_count`, `message_count`, `storage_used_bytes`/`storage_used_gb`, quota and status.
- `POST /api/user/tenants {"quota_gb": N}` → 200 `{id, tenant_username, tenant_name,
  tenant_password, quota_gb, status}`; the password is never shown again.
- `GET  /api/user/tenants/{id}`; `POST .../{id}/suspend|reactivate|terminate`;
  `PATCH .../{id}/quota {"quota_gb": N}`. `{id}` is the tenant's `id` or its `tenant_username`.
  Suspend/reactivate/terminate answer 200 with `changed: false` when already in that state.
  Another reseller's tenant, and a terminated one (except for terminate), is 404 TENANT_NOT_FOUND.
- `GET /api/user/reseller/overview`, `POST /api/user/reseller/sync-quota`.
- `GET|PUT /api/user/reseller/branding` (name, logo_url, colors{primary,secondary},
  webmail_host, dashboard_host); PUT replaces the whole brand.
- `GET|POST /api/user/api-keys`, `DELETE /api/user/api-keys/{id}` (revoke; the key is shown once).
- `GET /api/user/audit?limit=N` (newest first, default 100, at most 1000).
Every change is written to the reseller's audit log in the transaction that makes it.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from mailwright.api.auth import services
from mailwright.api.reseller_common import BadBody, bad_body, caller, fail, from_error, json_object, ok
from mailwright.directory import audit, resellers, tenants
from mailwright.directory.errors import DirectoryError, Invalid
from mailwright.directory.tenants import bytes_to_gb, gb_to_bytes
from mailwright.storage.models import ApiKey, Tenant

router = APIRouter(prefix="/api/user", tags=["reseller"])


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def tenant_json(t: Tenant, usage: resellers.TenantUsage | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": t.id,
        "tenant_username": t.admin_username,
        "tenant_name": t.name,
        "status": t.status,
        "quota_gb": bytes_to_gb(t.quota_bytes),
        "quota_bytes": t.quota_bytes,
        "created_at": _iso(t.created_at),
    }
    if usage is not None:
        out.update(email_count=usage.email_count, alias_count=usage.alias_count, domain_count=usage.domain_count,
                   message_count=usage.message_count, storage_used_bytes=usage.used_bytes,
                   storage_used_gb=bytes_to_gb(usage.used_bytes))
    return out


def key_json(k: ApiKey) -> dict[str, Any]:
    return {"id": k.id, "name": k.name, "hint": k.hint, "created_at": _iso(k.created_at),
            "last_used_at": _iso(k.last_used_at), "revoked": k.revoked_at is not None,
            "revoked_at": _iso(k.revoked_at)}


async def _quota_from(request: Request) -> int:
    body = await json_object(request)
    if "quota_gb" not in body:
        raise Invalid("field 'quota_gb' is required", field="quota_gb")
    return gb_to_bytes(body["quota_gb"])


@router.get("/tenants")
async def list_tenants(request: Request) -> JSONResponse:
    who = await caller(request, "reseller")
    if isinstance(who, JSONResponse):
        return who
    _, rid = who
    async with services(request).db.read() as s:
        rows = await tenants.list_subtenants(s, rid)
        usage = await resellers.usage_by_tenant(s, [t.id for t in rows])
    return ok([tenant_json(t, usage[t.id]) for t in rows])


@router.post("/tenants")
async def create_tenant(request: Request) -> JSONResponse:
    who = await caller(request, "reseller")
    if isinstance(who, JSONResponse):
        return who
    actor, rid = who
    try:
        body = await json_object(request)
        if "quota_gb" not in body:
            raise Invalid("field 'quota_gb' is required", field="quota_gb")
        quota = gb_to_bytes(body["quota_gb"])
        t, password = await tenants.create_subtenant(services(request), rid, quota, actor)
    except BadBody as exc:
        return bad_body(exc)
    except DirectoryError as exc:
        return from_error(exc)
    return ok({"id": t.id, "tenant_username": t.admin_username, "tenant_name": t.name, "tenant_password": password,
               "quota_gb": body["quota_gb"], "status": t.status})


@router.get("/tenants/{ident}")
async def get_tenant(ident: str, request: Request) -> JSONResponse:
    who = await caller(request, "reseller")
    if isinstance(who, JSONResponse):
        return who
    _, rid = who
    try:
        async with services(request).db.read() as s:
            t = await tenants.find_subtenant(s, rid, ident)
            usage = await resellers.usage_by_tenant(s, [t.id])
    except DirectoryError as exc:
        return from_error(exc, not_found="TENANT_NOT_FOUND")
    return ok(tenant_json(t, usage[t.id]))


async def _status_change(request: Request, ident: str, status: str) -> JSONResponse:
    who = await caller(request, "reseller")
    if isinstance(who, JSONResponse):
        return who
    actor, rid = who
    try:
        t, changed = await tenants.set_status(services(request), rid, ident, status, actor)
    except DirectoryError as exc:
        return from_error(exc, not_found="TENANT_NOT_FOUND")
    return ok({**tenant_json(t), "changed": changed})


@router.post("/tenants/{ident}/suspend")
async def suspend(ident: str, request: Request) -> JSONResponse:
    return await _status_change(request, ident, "suspended")


@router.post("/tenants/{ident}/reactivate")
async def reactivate(ident: str, request: Request) -> JSONResponse:
    return await _status_change(request, ident, "active")


@router.post("/tenants/{ident}/terminate")
async def terminate(ident: str, request: Request) -> JSONResponse:
    who = await caller(request, "reseller")
    if isinstance(who, JSONResponse):
        return who
    actor, rid = who
    try:
        r = await tenants.terminate(services(request), rid, ident, actor)
    except DirectoryError as exc:
        return from_error(exc, not_found="TENANT_NOT_FOUND")
    return ok({
        "id": r.tenant.id, "tenant_username": r.tenant.admin_username, "tenant_name": r.tenant.name,
        "status": r.tenant.status, "changed": r.changed,
        "deleted": {"domains": r.domains, "mailboxes": r.principals, "messages": r.messages,
                    "queued": r.queued},
        "freed_quota_gb": bytes_to_gb(r.tenant.quota_bytes) if r.changed else 0,
    })


@router.patch("/tenants/{ident}/quota")
async def set_quota(ident: str, request: Request) -> JSONResponse:
    who = await caller(request, "reseller")
    if isinstance(who, JSONResponse):
        return who
    actor, rid = who
    try:
        quota = await _quota_from(request)
        t = await tenants.set_quota(services(request), rid, ident, quota, actor)
    except BadBody as exc:
        return bad_body(exc)
    except DirectoryError as exc:
        return from_error(exc, not_found="TENANT_NOT_FOUND")
    return ok(tenant_json(t))


@router.get("/reseller/overview")
async def overview(request: Request) -> JSONResponse:
    who = await caller(request, "reseller")
    if isinstance(who, JSONResponse):
        return who
    _, rid = who
    async with services(request).db.read() as s:
        o = await resellers.overview(s, rid)
    r = o.reseller
    available = max(r.pool_bytes - o.allocated_bytes, 0) if r.pool_bytes else None
    return ok({
        "reseller": r.name,
        "plan": r.plan,
        "pool_gb": bytes_to_gb(r.pool_bytes) if r.pool_bytes else None,
        "pool_bytes": r.pool_bytes or None,
        "allocated_gb": bytes_to_gb(o.allocated_bytes),
        "allocated_bytes": o.allocated_bytes,
        "available_gb": bytes_to_gb(available) if available is not None else None,
        "available_bytes": available,
        "used_gb": bytes_to_gb(o.used_bytes),
        "used_bytes": o.used_bytes,
        "max_tenants": r.max_tenants or None,
        "tenants": {**o.tenants, "total": o.tenants["active"] + o.tenants["suspended"]},
    })


@router.post("/reseller/sync-quota")
async def sync_quota(request: Request) -> JSONResponse:
    who = await caller(request, "reseller")
    if isinstance(who, JSONResponse):
        return who
    actor, rid = who
    async with services(request).db.write() as s:
        checked, drifts = await resellers.sync_quota(s, rid, actor)
        o = await resellers.overview(s, rid)
    return ok({
        "mailboxes_checked": checked,
        "drift_corrected": len(drifts),
        "corrections": [{"tenant_id": d.tenant_id, "tenant_username": d.tenant_username, "mailbox": d.principal,
                         "recorded_bytes": d.recorded_bytes, "actual_bytes": d.actual_bytes} for d in drifts],
        "used_bytes": o.used_bytes,
        "allocated_bytes": o.allocated_bytes,
        "available_bytes": max(o.reseller.pool_bytes - o.allocated_bytes, 0) if o.reseller.pool_bytes else None,
    })


@router.get("/reseller/branding")
async def get_branding(request: Request) -> JSONResponse:
    who = await caller(request, "reseller")
    if isinstance(who, JSONResponse):
        return who
    _, rid = who
    async with services(request).db.read() as s:
        r = await resellers.get_reseller(s, rid)
    return ok(resellers.branding_of(r))


@router.put("/reseller/branding")
async def put_branding(request: Request) -> JSONResponse:
    who = await caller(request, "reseller")
    if isinstance(who, JSONResponse):
        return who
    actor, rid = who
    try:
        body = await json_object(request)
        async with services(request).db.write() as s:
            brand = await resellers.set_branding(s, rid, body, actor)
    except BadBody as exc:
        return bad_body(exc)
    except DirectoryError as exc:
        return from_error(exc)
    return ok(brand)


@router.get("/api-keys")
async def list_keys(request: Request) -> JSONResponse:
    who = await caller(request, "reseller")
    if isinstance(who, JSONResponse):
        return who
    _, rid = who
    async with services(request).db.read() as s:
        keys = await resellers.list_keys(s, rid)
    return ok([key_json(k) for k in keys])


@router.post("/api-keys")
async def create_key(request: Request) -> JSONResponse:
    who = await caller(request, "reseller")
    if isinstance(who, JSONResponse):
        return who
    actor, rid = who
    try:
        body = await json_object(request, optional=True)
        async with services(request).db.write() as s:
            row, key = await resellers.mint_key(s, rid, name=body.get("name"), created_by=actor.key_id)
            await tenants.log_action(s, actor, "apikey.create", row.id, name=row.name)
    except BadBody as exc:
        return bad_body(exc)
    except DirectoryError as exc:
        return from_error(exc)
    return ok({**key_json(row), "key": key})


@router.delete("/api-keys/{key_id}")
async def revoke_key(key_id: str, request: Request) -> JSONResponse:
    who = await caller(request, "reseller")
    if isinstance(who, JSONResponse):
        return who
    actor, rid = who
    try:
        async with services(request).db.write() as s:
            row, changed = await resellers.revoke_key(s, rid, key_id)
            if changed:
                await tenants.log_action(s, actor, "apikey.revoke", row.id)
    except DirectoryError as exc:
        return from_error(exc)
    return ok({**key_json(row), "changed": changed})


@router.get("/audit")
async def audit_log(request: Request) -> JSONResponse:
    who = await caller(request, "reseller")
    if isinstance(who, JSONResponse):
        return who
    _, rid = who
    raw = request.query_params.get("limit", "100")
    if not raw.isdigit() or not 1 <= int(raw) <= audit.MAX_LIST:
        return fail(400, "VALIDATION_ERROR", f"limit must be an integer from 1 to {audit.MAX_LIST}")
    async with services(request).db.read() as s:
        entries = await audit.list_entries(s, rid, int(raw))
    return ok([e.as_dict() for e in entries])


@router.api_route("/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False)
async def unknown_endpoint(rest: str, request: Request) -> JSONResponse:
    """Anything else under /api/user: the dialect's 401/404, not the framework's."""
    who = await caller(request, "reseller")
    if isinstance(who, JSONResponse):
        return who
    return fail(404, "NOT_FOUND", f"no such endpoint: /api/user/{rest[:100]}")

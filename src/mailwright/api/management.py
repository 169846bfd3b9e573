"""The management dialect (Mailbux guide / Stalwart principals): /api/principal ...

Thin: parse the request, call the directory service, render `{"data": ...}` or the dialect's
error body `{"error": "notFound"|"fieldAlreadyExists"|..., "details": ...}`.
Tenant scope: a tenant key acts on its own tenant; the platform key acts on the tenant named in
`X-Mailwright-Tenant` (id or name), or on the "default" tenant when none is named.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from mailwright.api.auth import key_context, services
from mailwright.directory import domains, principals, tenants
from mailwright.directory.errors import DirectoryError, Forbidden, NotFound
from mailwright.directory.principals import PrincipalSpec

router = APIRouter(prefix="/api", tags=["management"])

STATUS = {"notFound": 404, "fieldAlreadyExists": 409, "forbidden": 403, "fieldMissing": 400, "invalid": 400}


def error(code: str, status: int, details: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": code, "details": details, **extra}, status_code=status)


def from_service_error(exc: DirectoryError) -> JSONResponse:
    extra = {"field": exc.field} if exc.field else {}
    if exc.value is not None and isinstance(exc.value, str | int):
        extra["value"] = exc.value  # type: ignore[assignment]
    return error(exc.code, STATUS.get(exc.code, 400), exc.message, **extra)


async def tenant_scope(request: Request) -> str | JSONResponse:
    """The tenant id this request acts on, or the error response to send."""
    ctx = await key_context(request)
    if ctx is None:
        return error("unauthorized", 401, "missing, invalid or revoked API key")
    svc = services(request)
    if ctx.is_platform:
        named = request.headers.get("x-mailwright-tenant")
        async with svc.db.write() as s:
            try:
                t = await tenants.get_tenant(s, named) if named else await tenants.ensure_default_tenant(s)
            except NotFound as exc:
                return from_service_error(exc)
            return t.id
    if ctx.scope != "tenant" or ctx.tenant_id is None:
        return error("forbidden", 403, "this key cannot use the management API")
    return ctx.tenant_id


async def json_body(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        raise DirectoryError("request body is not valid JSON") from None


@router.post("/principal")
async def create_principal(request: Request) -> JSONResponse:
    scope = await tenant_scope(request)
    if isinstance(scope, JSONResponse):
        return scope
    svc = services(request)
    try:
        body = await json_body(request)
        if not isinstance(body, dict):
            return error("invalid", 400, "request body must be a JSON object")
        ptype = body.get("type")
        if ptype == "domain":
            name = body.get("name")
            if not isinstance(name, str):
                return error("fieldMissing", 400, "field 'name' is required", field="name")
            async with svc.db.write() as s:
                d = await domains.create_domain(s, scope, name, description=body.get("description"))
            return JSONResponse({"data": d.id})
        spec = PrincipalSpec(
            type=ptype, name=body.get("name"), secrets=body.get("secrets"), emails=body.get("emails"),
            members=body.get("members"), description=body.get("description"), quota=body.get("quota"),
        )
        p = await principals.create_principal(svc.db, scope, spec,
                                              password_min_length=svc.settings.password_min_length)
        return JSONResponse({"data": p.id})
    except DirectoryError as exc:
        return from_service_error(exc)


@router.get("/principal")
async def list_principals(request: Request) -> JSONResponse:
    scope = await tenant_scope(request)
    if isinstance(scope, JSONResponse):
        return scope
    svc = services(request)
    types = [t for t in request.query_params.get("types", "individual,list,domain").split(",") if t]
    items: list[dict[str, Any]] = []
    async with svc.db.read() as s:
        if "domain" in types:
            ds, _ = await domains.list_domains(s, scope)
            items += [{"name": d.name, "type": "domain", "id": d.id} for d in ds]
        ptypes = [t for t in types if t in principals.PRINCIPAL_TYPES]
        if ptypes:
            ps, _ = await principals.list_principals(s, scope, ptypes)
            items += [{"name": p.name, "type": p.type, "id": p.id} for p in ps]
    return JSONResponse({"data": {"items": items, "total": len(items)}})


@router.get("/principal/{name}")
async def get_principal(name: str, request: Request) -> JSONResponse:
    scope = await tenant_scope(request)
    if isinstance(scope, JSONResponse):
        return scope
    svc = services(request)
    try:
        async with svc.db.read() as s:
            p = await principals.get_principal(s, name, scope)
            emails = await principals.addresses_of(s, p.id)
    except (DirectoryError, Forbidden) as exc:
        return from_service_error(exc)
    return JSONResponse({"data": {"id": p.id, "name": p.name, "type": p.type, "emails": emails,
                                  "description": p.description or "", "quota": p.quota_bytes}})

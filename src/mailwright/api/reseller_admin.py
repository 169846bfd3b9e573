"""Platform admin endpoints for reseller accounts (the reseller dialect's envelope and errors).

Authenticated with the platform key (`sa_...` or MAILWRIGHT_ADMIN_TOKEN), as Bearer or X-Api-Key.
- `POST /api/admin/resellers {name, plan?: free|paid (paid), pool_gb?: N (0 = unlimited),
  max_tenants?: N, max_domains?: N, max_mailboxes?: N (0 = unlimited)}` → the reseller and its
  first API key (`api_key`, shown once).
- `GET /api/admin/resellers`, `GET /api/admin/resellers/{id}` (id or name; the latter also with
  `domains`/`mailboxes` in use over the reseller and its sub-tenants).
- `PATCH /api/admin/resellers/{id} {plan?, pool_gb?, max_tenants?, max_domains?, max_mailboxes?,
  status?: active|suspended}` — a plan upgrade, a pool or limit change, or suspending the
  reseller (which pauses all its tenants).
`max_domains`/`max_mailboxes` bound the total over the reseller and its sub-tenants
(`directory.limits`); they are Mailwright's own (the reseller document has none), settable only
here and by `mailwright tenant limits`, never with the reseller's own `rk_` key. Any tenant's
limits: `api/tenant_admin.py`.
- `POST /api/admin/resellers/{id}/keys {name?}` → a new `rk_` key (shown once).
Each action goes to the reseller's audit log with actor "platform".
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from mailwright.api.auth import services
from mailwright.api.reseller_common import BadBody, bad_body, caller, from_error, json_object, ok
from mailwright.directory import limits, resellers, tenants
from mailwright.directory.errors import DirectoryError, Invalid
from mailwright.directory.limits_usage import usage
from mailwright.directory.tenants import GIB, Actor, bytes_to_gb
from mailwright.storage.models import Tenant

router = APIRouter(prefix="/api/admin/resellers", tags=["reseller admin"])


def pool_bytes(value: object) -> int:
    """pool_gb: a number >= 0 (0 = unlimited)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value or not 0 <= value <= 1024**2:
        raise Invalid("pool_gb must be a number >= 0 (0 = unlimited)", field="pool_gb", value=value)
    return int(round(value * GIB))


def plan_limits(body: dict[str, Any]) -> dict[str, object]:
    """max_domains / max_mailboxes given in the body (range-checked by `limits.set_limits`); an
    explicit null is refused rather than read as "unchanged"."""
    for f in ("max_domains", "max_mailboxes"):
        if f in body and body[f] is None:
            raise Invalid(f"{f} must be an integer >= 0 (0 = unlimited), not null", field=f)
    return {f: body[f] for f in ("max_domains", "max_mailboxes") if f in body}


def reseller_json(r: Tenant) -> dict[str, Any]:
    return {"id": r.id, "name": r.name, "plan": r.plan, "status": r.status,
            "pool_gb": bytes_to_gb(r.pool_bytes), "max_tenants": r.max_tenants,
            "max_domains": r.max_domains, "max_mailboxes": r.max_mailboxes,
            "created_at": r.created_at.isoformat() if r.created_at else None}


def _for(actor: Actor, reseller_id: str) -> Actor:
    return Actor(log_tenant_id=reseller_id, name=actor.name, key_id=actor.key_id, source_ip=actor.source_ip)


@router.post("")
async def create(request: Request) -> JSONResponse:
    who = await caller(request, "platform")
    if isinstance(who, JSONResponse):
        return who
    actor, _ = who
    try:
        body = await json_object(request)
        name = body.get("name")
        max_tenants = body.get("max_tenants", 0)
        async with services(request).db.write() as s:
            r = await resellers.create_reseller(
                s, name if isinstance(name, str) else "", plan=body.get("plan", "paid"),
                pool_bytes=pool_bytes(body.get("pool_gb", 0)), max_tenants=max_tenants)
            r = await limits.set_limits(s, r.id, **plan_limits(body))
            row, key = await resellers.mint_key(s, r.id, name=body.get("key_name") or "initial",
                                                created_by="platform")
            await tenants.log_action(s, _for(actor, r.id), "reseller.create", r.name, plan=r.plan,
                                     pool_bytes=r.pool_bytes, max_tenants=r.max_tenants,
                                     max_domains=r.max_domains, max_mailboxes=r.max_mailboxes, key_id=row.id)
    except BadBody as exc:
        return bad_body(exc)
    except DirectoryError as exc:
        return from_error(exc)
    return ok({**reseller_json(r), "api_key": key, "api_key_id": row.id})


@router.get("")
async def list_all(request: Request) -> JSONResponse:
    who = await caller(request, "platform")
    if isinstance(who, JSONResponse):
        return who
    async with services(request).db.read() as s:
        rows = await resellers.list_resellers(s)
    return ok([reseller_json(r) for r in rows])


@router.get("/{ident}")
async def get_one(ident: str, request: Request) -> JSONResponse:
    who = await caller(request, "platform")
    if isinstance(who, JSONResponse):
        return who
    try:
        async with services(request).db.read() as s:
            r = await resellers.get_reseller(s, ident)
            o = await resellers.overview(s, r.id)
            u = await usage(s, r)
    except DirectoryError as exc:
        return from_error(exc)
    return ok({**reseller_json(r), "allocated_gb": bytes_to_gb(o.allocated_bytes),
               "used_bytes": o.used_bytes, "tenants": o.tenants, "domains": u.domains, "mailboxes": u.mailboxes})


@router.patch("/{ident}")
async def patch(ident: str, request: Request) -> JSONResponse:
    who = await caller(request, "platform")
    if isinstance(who, JSONResponse):
        return who
    actor, _ = who
    try:
        body = await json_object(request)
        unknown = set(body) - {"plan", "pool_gb", "max_tenants", "max_domains", "max_mailboxes", "status"}
        if unknown:
            raise Invalid(f"unknown field(s): {', '.join(sorted(unknown))}")
        pool = pool_bytes(body["pool_gb"]) if "pool_gb" in body else None
        async with services(request).db.write() as s:
            before = (await resellers.get_reseller(s, ident)).status
            r = await resellers.update_reseller(s, ident, plan=body.get("plan"), pool_bytes=pool,
                                                max_tenants=body.get("max_tenants"), status=body.get("status"))
            r = await limits.set_limits(s, r.id, **plan_limits(body))
            await tenants.log_action(s, _for(actor, r.id), "reseller.update", r.name, **body)
        if r.status != before:
            await tenants.announce_reseller(services(request), r.id, f"reseller.{r.status}")
    except BadBody as exc:
        return bad_body(exc)
    except DirectoryError as exc:
        return from_error(exc)
    return ok(reseller_json(r))


@router.post("/{ident}/keys")
async def mint(ident: str, request: Request) -> JSONResponse:
    who = await caller(request, "platform")
    if isinstance(who, JSONResponse):
        return who
    actor, _ = who
    try:
        body = await json_object(request, optional=True)
        async with services(request).db.write() as s:
            r = await resellers.get_reseller(s, ident)
            row, key = await resellers.mint_key(s, r.id, name=body.get("name"), created_by="platform")
            await tenants.log_action(s, _for(actor, r.id), "apikey.create", row.id, name=row.name)
    except BadBody as exc:
        return bad_body(exc)
    except DirectoryError as exc:
        return from_error(exc)
    return ok({"id": row.id, "name": row.name, "hint": row.hint, "key": key, "reseller_id": r.id})

"""Platform admin endpoints for any tenant's plan limits (the reseller dialect's envelope and errors).

`max_domains` / `max_mailboxes` (0 = unlimited, enforced by `directory.limits` on every creation
path) are Mailwright's own operator controls: no reference dialect exposes them, so they live
next to `/api/admin/resellers`, on the platform key only (`sa_...` or MAILWRIGHT_ADMIN_TOKEN, as
Bearer or X-Api-Key). A tenant's own key, a reseller's key or any other key gets 403 FORBIDDEN:
a tenant must never raise its own plan, and a reseller's plan is the platform's to set.

- `GET /api/admin/tenants` → every live tenant and reseller with its limits and usage.
- `GET /api/admin/tenants/{id}` (id or name) → one, with `domains`/`mailboxes` in use (for a
  reseller: over itself and its sub-tenants, as enforced).
- `PATCH /api/admin/tenants/{id} {max_domains?, max_mailboxes?}` → sets them; a field left out
  keeps its value. Each must be an integer 0..2^31-1 (`null`, strings, floats, booleans and
  negatives are 400 VALIDATION_ERROR, as are unknown fields); a body that is not a JSON object is
  400 INVALID_JSON; an unknown or terminated tenant 404 TENANT_NOT_FOUND. Lowering a limit below
  current usage is allowed and deletes nothing (`directory.limits`); the answer shows the usage
  so the caller sees it. The change goes to the tenant's audit log with actor "platform".
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession

from mailwright.api.auth import services
from mailwright.api.reseller_admin import plan_limits
from mailwright.api.reseller_common import BadBody, bad_body, caller, from_error, json_object, ok
from mailwright.directory import limits, tenants, workspaces
from mailwright.directory.errors import DirectoryError, Invalid
from mailwright.directory.limits_usage import usage
from mailwright.directory.tenants import Actor, bytes_to_gb
from mailwright.storage.models import Tenant

router = APIRouter(prefix="/api/admin/tenants", tags=["tenant admin"])

FIELDS = ("max_domains", "max_mailboxes")


async def tenant_json(s: AsyncSession, t: Tenant) -> dict[str, Any]:
    return {"id": t.id, "name": t.name, "kind": t.kind, "status": t.status, "parent_id": t.parent_id,
            "quota_gb": bytes_to_gb(t.quota_bytes), **(await usage(s, t)).as_dict()}


def limits_from(body: dict[str, Any]) -> dict[str, object]:
    unknown = set(body) - set(FIELDS)
    if unknown:
        raise Invalid(f"unknown field(s): {', '.join(sorted(unknown))}")
    return plan_limits(body)


@router.get("")
async def list_all(request: Request) -> JSONResponse:
    who = await caller(request, "platform")
    if isinstance(who, JSONResponse):
        return who
    async with services(request).db.read() as s:
        return ok([await tenant_json(s, t) for t in await workspaces.list_tenants(s)])


@router.get("/{ident}")
async def get_one(ident: str, request: Request) -> JSONResponse:
    who = await caller(request, "platform")
    if isinstance(who, JSONResponse):
        return who
    try:
        async with services(request).db.read() as s:
            return ok(await tenant_json(s, await tenants.get_tenant(s, ident)))
    except DirectoryError as exc:
        return from_error(exc, not_found="TENANT_NOT_FOUND")


@router.patch("/{ident}")
async def patch(ident: str, request: Request) -> JSONResponse:
    who = await caller(request, "platform")
    if isinstance(who, JSONResponse):
        return who
    actor, _ = who
    try:
        changes = limits_from(await json_object(request))
        async with services(request).db.write() as s:
            t = await tenants.get_tenant(s, ident)
            before = (t.max_domains, t.max_mailboxes)
            t = await limits.set_limits(s, t.id, **changes)
            if (t.max_domains, t.max_mailboxes) != before:
                await tenants.log_action(s, Actor(log_tenant_id=t.id, name=actor.name, key_id=actor.key_id,
                                                  source_ip=actor.source_ip), "tenant.limits", t.name, **changes)
            data = await tenant_json(s, t)
    except BadBody as exc:
        return bad_body(exc)
    except DirectoryError as exc:
        return from_error(exc, not_found="TENANT_NOT_FOUND")
    return ok(data)

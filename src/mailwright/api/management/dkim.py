"""`/api/dkim`: generate, list and retire a domain's DKIM keys (private keys never leave).

`POST /api/dkim {id?, algorithm, domain, selector?}` → `{data: <id>}`. `algorithm` is
`ed25519-sha256` or `rsa-sha256` (2048-bit); absent, `rsa-sha256` (what every verifier
understands). `selector` absent → Stalwart's `YYYYMM` + `r`/`e`. Several selectors per domain
are allowed (rotation, or an rsa + ed25519 pair); the same selector twice is 409.
`GET /api/dkim/{domain}` (or `GET /api/dkim?domain=`) lists public parts; `DELETE
/api/dkim/{domain}/{selector}` retires a key at once (outbound mail stops being signed with it;
remove its TXT record later, after mail in flight has been verified).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from mailwright.api.auth import services
from mailwright.api.management.common import (
    RESPONSES,
    Caller,
    DialectError,
    Tenant,
    dialect_errors,
    json_body,
    reject_unknown,
    want_str,
)
from mailwright.directory import dkim, domains
from mailwright.storage.models import DkimKeyRow

router = APIRouter(prefix="/api", tags=["management: DKIM"], responses=RESPONSES)


def key_item(row: DkimKeyRow, domain: str) -> dict[str, Any]:
    return {"id": row.id, "domain": domain, "selector": row.selector, "algorithm": row.algorithm,
            "active": row.active, "dnsName": f"{row.selector}._domainkey.{domain}", "dnsValue": row.public_txt,
            "createdAt": row.created_at.isoformat() if row.created_at else None}


@router.post("/dkim", summary="Create a DKIM key for a domain",
             description="`{id?, algorithm: ed25519-sha256|rsa-sha256, domain, selector?}` → `{data: <id>}`.",
             openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                 "schema": {"type": "object"}, "example": {"id": "example.com", "algorithm": "ed25519-sha256",
                                                           "domain": "example.com", "selector": "mailbux"}}}}})
@dialect_errors
async def create_key(request: Request, tenant: Tenant, actor: Caller) -> JSONResponse:
    svc = services(request)
    body = await json_body(request)
    if not isinstance(body, dict):
        raise DialectError("invalid", "request body must be a JSON object")
    reject_unknown(body, {"id", "algorithm", "domain", "selector"})
    name = want_str(body, "domain", required=True)
    algorithm = want_str(body, "algorithm") or "rsa-sha256"
    selector = want_str(body, "selector")
    key_id = want_str(body, "id")
    assert name is not None
    async with svc.db.read() as s:
        dom = await domains.get_domain(s, name, tenant)
    row = await dkim.create(svc.db, dom, algorithm, selector, key_id or None, actor=actor)
    return JSONResponse({"data": row.id})


async def _list(request: Request, tenant: str, domain: str) -> JSONResponse:
    svc = services(request)
    async with svc.db.read() as s:
        dom = await domains.get_domain(s, domain, tenant)
        rows = await dkim.list_for_domain(s, dom.id)
    return JSONResponse({"data": [key_item(r, dom.name) for r in rows]})


@router.get("/dkim", summary="List a domain's DKIM keys (?domain=)")
@dialect_errors
async def list_keys_query(request: Request, tenant: Tenant) -> JSONResponse:
    domain = request.query_params.get("domain")
    if not domain:
        raise DialectError("fieldMissing", "query parameter 'domain' is required", field="domain")
    return await _list(request, tenant, domain)


@router.get("/dkim/{domain}", summary="List a domain's DKIM keys (public parts only)")
@dialect_errors
async def list_keys(domain: str, request: Request, tenant: Tenant) -> JSONResponse:
    return await _list(request, tenant, domain)


@router.delete("/dkim/{domain}/{selector}", summary="Retire a DKIM key")
@dialect_errors
async def retire_key(domain: str, selector: str, request: Request, tenant: Tenant, actor: Caller
                     ) -> JSONResponse:
    svc = services(request)
    async with svc.db.write() as s:
        dom = await domains.get_domain(s, domain, tenant)
        await dkim.retire(s, dom.id, selector, actor=actor)
    return JSONResponse({"data": None})

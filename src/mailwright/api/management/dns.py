"""`/api/dns/{domain}` and `/api/dns/records/{domain}`: the records a domain needs.

`{data: [{type, name, content, priority?}, ...]}` (see `dnsrecords.expected` for what and why);
`?format=zone` answers the same records as a BIND zone-file fragment (text/plain).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from mailwright.api.auth import services
from mailwright.api.management.common import RESPONSES, DialectError, Tenant, dialect_errors
from mailwright.directory import domains
from mailwright.dnsrecords import records_for_domain, render_zone

router = APIRouter(prefix="/api", tags=["management: DNS"], responses=RESPONSES)


async def _records(domain: str, request: Request, tenant: str) -> Response:
    svc = services(request)
    fmt = request.query_params.get("format", "json")
    if fmt not in ("json", "zone"):
        raise DialectError("invalid", "format must be json or zone", field="format")
    async with svc.db.read() as s:
        dom = await domains.get_domain(s, domain, tenant)
        records = await records_for_domain(s, svc.settings, dom.id)
    if fmt == "zone":
        return PlainTextResponse(render_zone(records, comment=f"Mailwright records for {dom.name}"))
    return JSONResponse({"data": [r.as_dict() for r in records]})


@router.get("/dns/records/{domain}", summary="DNS records the domain needs (Stalwart path)",
            description="MX, SPF, DKIM, DMARC, SRV, autoconfig, MTA-STS, TLS-RPT. `?format=zone` for BIND.")
@dialect_errors
async def dns_records(domain: str, request: Request, tenant: Tenant) -> Response:
    return await _records(domain, request, tenant)


@router.get("/dns/{domain}", summary="DNS records the domain needs (Mailbux path)",
            description="Same as /api/dns/records/{domain}.")
@dialect_errors
async def dns(domain: str, request: Request, tenant: Tenant) -> Response:
    return await _records(domain, request, tenant)

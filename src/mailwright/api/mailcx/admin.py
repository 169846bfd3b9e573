"""Platform admin API for self-service: system domains and Pro promotion (platform key only).

`GET /api/admin/system-domains`, `POST /api/admin/system-domains {"domain"}`,
`DELETE /api/admin/system-domains/{domain}` (removes every mailbox on it), and
`POST /api/admin/selfservice/pro {"address"}` (makes a self-service account Pro and returns a new
`tm_pro_` token, shown once). Errors are in the management dialect's shape
(`{"error": "notFound"|"fieldAlreadyExists"|"invalid"|"unauthorized"|"forbidden", "details"}`),
since the caller is the platform operator using the management API.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from mailwright.api.auth import key_context, services
from mailwright.api.management.common import error, from_service_error
from mailwright.directory import selfservice
from mailwright.directory.errors import DirectoryError, Invalid, MissingField
from mailwright.storage.models import Domain

router = APIRouter(prefix="/api/admin", tags=["self-service admin"])


class _Refused(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


async def _platform(request: Request) -> None:
    ctx = await key_context(request)
    if ctx is None:
        raise _Refused(error("unauthorized", 401, "missing, invalid, expired or revoked API key",
                             headers={"WWW-Authenticate": "Bearer"}))
    if not ctx.is_platform:
        raise _Refused(error("forbidden", 403, "the platform admin key is required"))


async def _body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise Invalid("request body must be a JSON object") from None
    if not isinstance(body, dict):
        raise Invalid("request body must be a JSON object")
    return body


async def _run(request: Request, fn: Callable[[], Awaitable[Response]]) -> Response:
    try:
        await _platform(request)
        return await fn()
    except _Refused as exc:
        return exc.response
    except DirectoryError as exc:
        return from_service_error(exc)


def domain_json(d: Domain) -> dict[str, Any]:
    return {"id": d.id, "domain": d.name, "created_at": d.created_at.isoformat() if d.created_at else None}


@router.get("/system-domains")
async def list_system_domains(request: Request) -> Response:
    async def go() -> Response:
        rows = await selfservice.list_system_domains(services(request))
        return JSONResponse({"data": [domain_json(d) for d in rows]})

    return await _run(request, go)


@router.post("/system-domains", status_code=201)
async def add_system_domain(request: Request) -> Response:
    async def go() -> Response:
        name = (await _body(request)).get("domain")
        if not isinstance(name, str) or not name.strip():
            raise MissingField("field 'domain' is required", field="domain")
        d = await selfservice.add_system_domain(services(request), name)
        return JSONResponse({"data": domain_json(d)}, status_code=201)

    return await _run(request, go)


@router.delete("/system-domains/{domain}")
async def remove_system_domain(domain: str, request: Request) -> Response:
    async def go() -> Response:
        await selfservice.remove_system_domain(services(request), domain)
        return JSONResponse({"data": None})

    return await _run(request, go)


@router.post("/selfservice/pro")
async def make_pro(request: Request) -> Response:
    async def go() -> Response:
        address = (await _body(request)).get("address")
        if not isinstance(address, str) or not address.strip():
            raise MissingField("field 'address' is required", field="address")
        p, token = await selfservice.promote_pro(services(request), address)
        return JSONResponse({"data": {"id": p.id, "address": p.name, "role": p.role, "token": token}})

    return await _run(request, go)

"""Liveness and readiness for load balancers: GET /health."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from mailwright.api.auth import services

router = APIRouter()


@router.get("/health", include_in_schema=False)
async def health(request: Request) -> JSONResponse:
    try:
        await services(request).db.check()
    except Exception:  # noqa: BLE001 - the answer is the point, not the exception
        return JSONResponse({"status": "error", "database": "unreachable"}, status_code=503)
    return JSONResponse({"status": "ok"})

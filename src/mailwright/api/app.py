"""The FastAPI application: every dialect's router on one app, OpenAPI at /api/openapi.json.

Errors that escape a router are turned into a JSON 4xx/5xx here, never an HTML traceback;
each dialect router renders its own expected errors in its own shape before that.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from mailwright import __version__
from mailwright.api import health, management
from mailwright.services import Services

log = logging.getLogger(__name__)


def create_app(svc: Services) -> FastAPI:
    app = FastAPI(
        title="Mailwright",
        version=__version__,
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
    )
    app.state.services = svc
    app.include_router(health.router)
    app.include_router(management.router)
    from mailwright.api import wellknown

    app.include_router(wellknown.router)
    from mailwright.api import reseller, reseller_admin, tenant_admin, tenant_login

    app.include_router(reseller.router)
    app.include_router(reseller_admin.router)
    app.include_router(tenant_admin.router)
    app.include_router(tenant_login.router)
    from mailwright.api import queue as queue_api

    app.include_router(queue_api.router)
    from mailwright.api import agent

    app.include_router(agent.router)
    from mailwright.api import mailcx
    from mailwright.api.mailcx import pro as mailcx_pro

    app.include_router(mailcx.router)
    app.include_router(mailcx_pro.router)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": "invalid", "details": str(exc.errors()[:3])}, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        body = exc.detail if isinstance(exc.detail, dict) else {"error": exc.detail}
        return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, DBAPIError) and exc.connection_invalidated:
            # The database restarted or dropped us: the pool is renewed, a retry will work.
            log.warning("database connection lost on %s %s", request.method, request.url.path)
            return JSONResponse({"error": "unavailable", "details": "database connection lost, retry"},
                                status_code=503, headers={"Retry-After": "1"})
        log.exception("unhandled API error on %s %s", request.method, request.url.path)
        return JSONResponse({"error": "other", "details": "internal error"}, status_code=500)

    return app

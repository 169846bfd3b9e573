"""Presented credentials -> KeyContext, shared by every dialect.

Keys arrive as `Authorization: Bearer <key>`, `X-Api-Key` or `X-API-Key` (header names are
case-insensitive). Each dialect decides what a missing/invalid key looks like in its own error
shape; this module only answers "who is this".
"""

from __future__ import annotations

from fastapi import Request

from mailwright.directory.apikeys import KeyContext, authenticate
from mailwright.services import Services


def presented_key(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    key = request.headers.get("x-api-key")
    if key:
        return key.strip() or None
    return request.query_params.get("api_key") or None


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


async def key_context(request: Request) -> KeyContext | None:
    """Cached per request, so several dependencies may ask."""
    if hasattr(request.state, "key_context"):
        ctx: KeyContext | None = request.state.key_context
        return ctx
    svc = services(request)
    key = presented_key(request)
    ctx = await authenticate(svc.db, key, svc.settings.admin_token) if key else None
    request.state.key_context = ctx
    return ctx


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None

"""`GET /v1/events`: Server-Sent Events of the same mail events webhooks get, for the key's scope.

Auth as everywhere (headers), or `?api_key=` for EventSource clients that cannot set headers.
Each event is `id: <event id>`, `event: <type>`, `data: <the webhook JSON body>`; a comment
line every 15 seconds keeps proxies from closing an idle stream. `?types=a,b` narrows the
types. The stream is live only: a reconnecting client should list messages to catch up
(Last-Event-ID is not replayed).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from mailwright.api.agent.common import ApiError, handle, require_key
from mailwright.api.agent.webhooks import scope_of
from mailwright.api.auth import services
from mailwright.events import webhooks

router = APIRouter(tags=["agent: events"])
KEEPALIVE = 15.0


@router.get("/events")
async def stream(request: Request) -> Response:
    async def go() -> Response:
        ctx = await require_key(request)
        types = {t for t in request.query_params.get("types", "").split(",") if t}
        unknown = types - set(webhooks.MAIL_EVENTS)
        if unknown:
            raise ApiError(400, "INVALID_REQUEST", f"unknown event type {sorted(unknown)[0]!r}")
        svc = services(request)
        scope = scope_of(ctx)

        async def body() -> AsyncIterator[bytes]:
            async with webhooks.mail_events(svc, scope, types or None) as q:
                yield b": connected\n\n"
                while not await request.is_disconnected():
                    try:
                        me = await asyncio.wait_for(q.get(), timeout=KEEPALIVE)
                    except TimeoutError:
                        yield b": keepalive\n\n"
                        continue
                    data = json.dumps(webhooks.payload_for("agent", me), separators=(",", ":"))
                    yield f"id: {me.id}\nevent: {me.type}\ndata: {data}\n\n".encode()

        return StreamingResponse(body(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return await handle(go)

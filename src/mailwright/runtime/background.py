"""Background work every node runs (outbound queue, webhooks, clean-ups)."""

from __future__ import annotations

import asyncio

from mailwright.services import Services


async def start_background(svc: Services) -> list[asyncio.Task[None]]:
    """Start the node's background tasks; returns them so `serve` can cancel them on stop."""
    from mailwright.delivery.outbound import start_runner
    from mailwright.events.webhooks import run_dispatcher
    from mailwright.storage.blobjournal import run_flusher

    return [asyncio.create_task(run_dispatcher(svc), name="webhooks"),
            asyncio.create_task(run_flusher(svc), name="blob-journal"), await start_runner(svc)]

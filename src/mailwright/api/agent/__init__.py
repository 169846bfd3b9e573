"""The agent-inbox dialect (myagentmail): `/v1/...` with key tiers sa_/tk_/wk_/ak_.

One module per resource; each is a thin router over the directory, mailstore and events
services. See docs/architecture.md ("Agent inboxes").
"""

from __future__ import annotations

from fastapi import APIRouter

from mailwright.api.agent import drafts, events, inboxes, messages, tenants, webhooks, workspaces

router = APIRouter(prefix="/v1")
for _module in (tenants, workspaces, inboxes, messages, drafts, webhooks, events):
    router.include_router(_module.router)

__all__ = ["router"]

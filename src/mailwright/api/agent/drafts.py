"""Drafts: `/v1/inboxes/{id}/drafts[/{did}[/send]]`.

A draft is a MIME message in the inbox's \\Drafts mailbox (IMAP clients see it too), its id
stable across updates (see mailstore.api_views). Sending a draft is atomic in the sense that
matters: the draft is first claimed (removed from \\Drafts; of two concurrent sends exactly one
wins, the other gets 404), then submitted; if submission fails the draft is put back and the
error returned, so a draft is never both lost and unsent, nor sent twice.
"""

from __future__ import annotations

from email import message_from_bytes
from email.policy import default as default_policy
from email.utils import getaddresses
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from mailwright.api.agent.common import ApiError, handle, idempotent, inbox_for, iso, json_object, require_key
from mailwright.api.agent.messages import draft_from, parent_message, send_as, with_retry_after
from mailwright.api.auth import services
from mailwright.mailstore import api_views, outgoing
from mailwright.mailstore.api_views import MessageView
from mailwright.services import Services
from mailwright.storage.models import Message, Principal

router = APIRouter(tags=["agent: drafts"])
FIELDS = ("to", "cc", "bcc", "subject", "plainBody", "htmlBody", "replyTo", "replyToMessageId")


def _unpad(body: str | None) -> str | None:
    """MIME text parts end with a line break the caller did not write; give back what was saved."""
    return body[:-1] if body is not None and body.endswith("\n") else body


async def draft_fields(svc: Services, v: MessageView) -> dict[str, Any]:
    raw, parsed = await api_views.content(svc, v.message)
    head = message_from_bytes(raw, policy=default_policy)

    def addrs(name: str) -> list[str]:
        return [a for _, a in getaddresses([str(x) for x in head.get_all(name, [])]) if a]

    return {
        "to": addrs("To"), "cc": addrs("Cc"), "bcc": addrs("Bcc"), "replyTo": addrs("Reply-To"),
        "subject": parsed.subject, "plainBody": _unpad(parsed.text_body), "htmlBody": _unpad(parsed.html_body),
        "replyToMessageId": str(head.get(api_views.REPLY_TO_ID_HEADER, "")).strip() or None,
    }


async def draft_json(svc: Services, inbox: Principal, v: MessageView) -> dict[str, Any]:
    return {"id": api_views.draft_id_of(v.message), "inboxId": inbox.id, **await draft_fields(svc, v),
            "threadId": v.message.thread_id, "updatedAt": iso(v.message.internal_date)}


async def _store(svc: Services, inbox: Principal, draft_id: str, fields: dict[str, Any]) -> MessageView:
    d = draft_from(fields)
    parent: Message | None = await parent_message(svc, inbox, fields)
    if parent is not None:
        d.headers[api_views.REPLY_TO_ID_HEADER] = str(parent.id)
    raw, _ = outgoing.compose(inbox.name, inbox.display_name, d, hostname=svc.settings.hostname, parent=parent,
                              message_id=api_views.draft_header_id(draft_id), draft=True)
    await api_views.save_draft(svc, inbox.id, raw)
    v = await api_views.get_draft(svc, inbox.id, draft_id)
    assert v is not None
    return v


async def _draft(svc: Services, inbox: Principal, draft_id: str) -> MessageView:
    v = await api_views.get_draft(svc, inbox.id, draft_id)
    if v is None:
        raise ApiError(404, "NOT_FOUND", f"draft {draft_id} not found")
    return v


@router.post("/inboxes/{inbox_id}/drafts")
async def create_draft(inbox_id: str, request: Request) -> Response:
    async def go() -> Response:
        ctx = await require_key(request)
        inbox = await inbox_for(request, inbox_id, ctx)
        body = await json_object(request)
        svc = services(request)
        v = await _store(svc, inbox, api_views.new_draft_id(), body)
        return JSONResponse(await draft_json(svc, inbox, v), status_code=201)

    return await idempotent(request, go)


@router.get("/inboxes/{inbox_id}/drafts")
async def list_drafts(inbox_id: str, request: Request) -> Response:
    async def go() -> Response:
        ctx = await require_key(request)
        inbox = await inbox_for(request, inbox_id, ctx)
        svc = services(request)
        rows = [v for v in await api_views.list_drafts(svc, inbox.id) if api_views.draft_id_of(v.message)]
        return JSONResponse({"drafts": [await draft_json(svc, inbox, v) for v in rows]})

    return await handle(go)


@router.get("/inboxes/{inbox_id}/drafts/{draft_id}")
async def get_draft(inbox_id: str, draft_id: str, request: Request) -> Response:
    async def go() -> Response:
        ctx = await require_key(request)
        inbox = await inbox_for(request, inbox_id, ctx)
        svc = services(request)
        return JSONResponse(await draft_json(svc, inbox, await _draft(svc, inbox, draft_id)))

    return await handle(go)


async def _update(inbox_id: str, draft_id: str, request: Request) -> Response:
    async def go() -> Response:
        ctx = await require_key(request)
        inbox = await inbox_for(request, inbox_id, ctx)
        body = await json_object(request)
        svc = services(request)
        old = await _draft(svc, inbox, draft_id)
        merged = await draft_fields(svc, old)
        merged.update({k: v for k, v in body.items() if k in FIELDS})
        v = await _store(svc, inbox, draft_id, merged)
        await api_views.remove_entry(svc, inbox.id, old.mailbox_id, old.uid)
        return JSONResponse(await draft_json(svc, inbox, v))

    return await handle(go)


@router.patch("/inboxes/{inbox_id}/drafts/{draft_id}")
async def patch_draft(inbox_id: str, draft_id: str, request: Request) -> Response:
    return await _update(inbox_id, draft_id, request)


@router.put("/inboxes/{inbox_id}/drafts/{draft_id}")
async def put_draft(inbox_id: str, draft_id: str, request: Request) -> Response:
    return await _update(inbox_id, draft_id, request)


@router.delete("/inboxes/{inbox_id}/drafts/{draft_id}")
async def delete_draft(inbox_id: str, draft_id: str, request: Request) -> Response:
    async def go() -> Response:
        ctx = await require_key(request)
        inbox = await inbox_for(request, inbox_id, ctx)
        svc = services(request)
        v = await _draft(svc, inbox, draft_id)
        if not await api_views.remove_entry(svc, inbox.id, v.mailbox_id, v.uid):
            raise ApiError(404, "NOT_FOUND", f"draft {draft_id} not found")
        return JSONResponse({"deleted": True, "id": draft_id})

    return await handle(go)


@router.post("/inboxes/{inbox_id}/drafts/{draft_id}/send")
async def send_draft(inbox_id: str, draft_id: str, request: Request) -> Response:
    async def go() -> Response:
        ctx = await require_key(request)
        inbox = await inbox_for(request, inbox_id, ctx)
        svc = services(request)
        v = await _draft(svc, inbox, draft_id)
        fields = await draft_fields(svc, v)
        raw, _ = await api_views.content(svc, v.message)
        d = draft_from(fields)
        parent = await parent_message(svc, inbox, fields)
        if not d.to and not d.cc and not d.bcc:
            raise ApiError(400, "INVALID_REQUEST", "the draft has no recipients", field="to")
        if not await api_views.remove_entry(svc, inbox.id, v.mailbox_id, v.uid):  # the claim
            raise ApiError(404, "NOT_FOUND", f"draft {draft_id} not found")
        try:
            out = await send_as(request, ctx, inbox, d, parent)
        except BaseException:
            await api_views.save_draft(svc, inbox.id, raw)  # put it back: not sent, not lost
            raise
        return JSONResponse({**out, "draftId": draft_id})

    return await with_retry_after(await idempotent(request, go))

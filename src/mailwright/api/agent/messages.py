"""Messages, attachments, threads and send for one inbox: `/v1/inboxes/{id}/...`.

Message ids are Mailwright's message row ids (strings of digits); `messageId` is the RFC 5322
Message-ID. The list is the inbox's INBOX and Sent, newest first (`direction` tells which).
Send goes through the one submission path (sender check, limits, DKIM, queue); a reply names
its parent by `replyToMessageId` (our id) or `inReplyTo` (our id or an RFC Message-ID) and gets
In-Reply-To/References from it. `status` is "sent" (all recipients local and delivered),
"queued" (some go to remote hosts through the queue) or "failed" (no recipient accepted;
`rejected` says why per recipient).
"""

from __future__ import annotations

from email.utils import parseaddr
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from mailwright.api.agent.common import ApiError, handle, idempotent, inbox_for, iso, json_object, require_key
from mailwright.api.auth import client_ip, services
from mailwright.directory.apikeys import KeyContext
from mailwright.directory.logins import Account
from mailwright.mailstore import api_views, outgoing
from mailwright.mailstore.api_views import MessageView
from mailwright.services import Services
from mailwright.storage.models import Message, Principal

router = APIRouter(tags=["agent: messages"])


def _page(request: Request) -> tuple[int, int]:
    try:
        limit = min(max(int(request.query_params.get("limit", "50")), 1), 200)
        offset = max(int(request.query_params.get("offset", "0")), 0)
    except ValueError:
        raise ApiError(400, "INVALID_REQUEST", "limit and offset must be integers") from None
    return limit, offset


def summary(inbox: Principal, v: MessageView) -> dict[str, Any]:
    m = v.message
    return {
        "id": str(m.id),
        "inboxId": inbox.id,
        "threadId": m.thread_id,
        "messageId": m.message_id_header,
        "from": m.from_addr,
        "fromName": parseaddr(m.from_display or "")[0] or None,
        "to": [a for a in (m.to_addrs or "").split(",") if a],
        "cc": [a for a in (m.cc_addrs or "").split(",") if a],
        "subject": m.subject,
        "preview": m.preview,
        "direction": "outbound" if v.mailbox != "INBOX" else "inbound",
        "folder": v.mailbox,
        "read": "\\seen" in v.flags.lower(),
        "hasAttachments": m.has_attachment,
        "sizeBytes": m.size,
        "inReplyTo": m.in_reply_to,
        "receivedAt": iso(m.internal_date),
        "sentAt": iso(m.sent_date),
    }


def parse_id(value: str, what: str = "message") -> int:
    if not value.isdigit() or len(value) > 18:
        raise ApiError(404, "NOT_FOUND", f"{what} {value} not found")
    return int(value)


async def message_view(svc: Services, inbox: Principal, message_id: str) -> MessageView:
    v = await api_views.get_message(svc, inbox.id, parse_id(message_id))
    if v is None:
        raise ApiError(404, "NOT_FOUND", f"message {message_id} not found")
    return v


async def full_message(svc: Services, inbox: Principal, v: MessageView) -> dict[str, Any]:
    raw, parsed = await api_views.content(svc, v.message)
    return {
        **summary(inbox, v),
        "references": v.message.references,
        "plainBody": parsed.text_body,
        "htmlBody": parsed.html_body,
        "attachments": [attachment_json(a, len(api_views.attachment_data(raw, a))) for a in parsed.attachments],
    }


def attachment_json(a: Any, size: int) -> dict[str, Any]:
    return {"id": str(a.index), "filename": a.filename, "contentType": a.content_type, "sizeBytes": size}


@router.get("/inboxes/{inbox_id}/messages")
async def list_messages(inbox_id: str, request: Request) -> Response:
    async def go() -> Response:
        ctx = await require_key(request)
        inbox = await inbox_for(request, inbox_id, ctx)
        limit, offset = _page(request)
        rows = await api_views.list_messages(services(request), inbox.id, limit=limit, offset=offset,
                                             thread_id=request.query_params.get("threadId"))
        return JSONResponse({"messages": [summary(inbox, v) for v in rows], "limit": limit, "offset": offset})

    return await handle(go)


@router.get("/inboxes/{inbox_id}/messages/{message_id}")
async def get_message(inbox_id: str, message_id: str, request: Request) -> Response:
    async def go() -> Response:
        ctx = await require_key(request)
        inbox = await inbox_for(request, inbox_id, ctx)
        svc = services(request)
        return JSONResponse(await full_message(svc, inbox, await message_view(svc, inbox, message_id)))

    return await handle(go)


@router.patch("/inboxes/{inbox_id}/messages/{message_id}")
async def update_message(inbox_id: str, message_id: str, request: Request) -> Response:
    """`{"read": true|false}`: the \\Seen flag IMAP clients see too."""
    async def go() -> Response:
        ctx = await require_key(request)
        inbox = await inbox_for(request, inbox_id, ctx)
        body = await json_object(request)
        svc = services(request)
        v = await message_view(svc, inbox, message_id)
        read = body.get("read")
        if not isinstance(read, bool):
            raise ApiError(400, "INVALID_REQUEST", "read must be true or false", field="read")
        await api_views.set_seen(svc, inbox.id, v.message.id, read)
        v2 = await message_view(svc, inbox, message_id)
        return JSONResponse(summary(inbox, v2))

    return await handle(go)


@router.delete("/inboxes/{inbox_id}/messages/{message_id}")
async def delete_message(inbox_id: str, message_id: str, request: Request) -> Response:
    """Removes the message from every mailbox of the inbox (its quota is freed)."""
    async def go() -> Response:
        ctx = await require_key(request)
        inbox = await inbox_for(request, inbox_id, ctx)
        svc = services(request)
        v = await message_view(svc, inbox, message_id)
        await api_views.delete_message(svc, inbox.id, v.message.id)
        return JSONResponse({"deleted": True, "id": message_id})

    return await handle(go)


@router.get("/inboxes/{inbox_id}/messages/{message_id}/raw")
async def raw_message(inbox_id: str, message_id: str, request: Request) -> Response:
    async def go() -> Response:
        ctx = await require_key(request)
        inbox = await inbox_for(request, inbox_id, ctx)
        svc = services(request)
        v = await message_view(svc, inbox, message_id)
        raw, _ = await api_views.content(svc, v.message)
        return Response(raw, media_type="message/rfc822")

    return await handle(go)


@router.get("/inboxes/{inbox_id}/messages/{message_id}/attachments")
async def list_attachments(inbox_id: str, message_id: str, request: Request) -> Response:
    async def go() -> Response:
        ctx = await require_key(request)
        inbox = await inbox_for(request, inbox_id, ctx)
        svc = services(request)
        v = await message_view(svc, inbox, message_id)
        items = await api_views.attachments(svc, v.message)
        return JSONResponse({"attachments": [attachment_json(a, len(data)) for a, data in items]})

    return await handle(go)


@router.get("/inboxes/{inbox_id}/messages/{message_id}/attachments/{attachment_id}")
async def download_attachment(inbox_id: str, message_id: str, attachment_id: str, request: Request) -> Response:
    async def go() -> Response:
        ctx = await require_key(request)
        inbox = await inbox_for(request, inbox_id, ctx)
        svc = services(request)
        v = await message_view(svc, inbox, message_id)
        for a, data in await api_views.attachments(svc, v.message):
            if str(a.index) == attachment_id:
                name = (a.filename or f"attachment-{a.index}").replace('"', "").replace("\r", "").replace("\n", "")
                disp = f"attachment; filename=\"{name.encode('ascii', 'replace').decode()}\""
                return Response(data, media_type=a.content_type, headers={"Content-Disposition": disp})
        raise ApiError(404, "NOT_FOUND", f"attachment {attachment_id} not found")

    return await handle(go)


@router.get("/inboxes/{inbox_id}/threads")
async def list_threads(inbox_id: str, request: Request) -> Response:
    async def go() -> Response:
        ctx = await require_key(request)
        inbox = await inbox_for(request, inbox_id, ctx)
        limit, offset = _page(request)
        rows = await api_views.list_threads(services(request), inbox.id, limit=limit, offset=offset)
        return JSONResponse({"threads": [{
            "id": t.thread_id, "inboxId": inbox.id, "subject": t.subject, "messageCount": t.message_count,
            "participants": t.participants, "preview": t.preview, "lastMessageId": str(t.last_message_id),
            "lastMessageAt": iso(t.last_message_at), "createdAt": iso(t.first_message_at),
        } for t in rows], "limit": limit, "offset": offset})

    return await handle(go)


@router.get("/inboxes/{inbox_id}/threads/{thread_id}")
async def get_thread(inbox_id: str, thread_id: str, request: Request) -> Response:
    async def go() -> Response:
        ctx = await require_key(request)
        inbox = await inbox_for(request, inbox_id, ctx)
        rows = await api_views.list_messages(services(request), inbox.id, limit=1000, thread_id=thread_id)
        if not rows:
            raise ApiError(404, "NOT_FOUND", f"thread {thread_id} not found")
        rows.reverse()  # oldest first, as a conversation reads
        return JSONResponse({"id": thread_id, "inboxId": inbox.id, "subject": rows[0].message.subject,
                             "messageCount": len(rows), "messages": [summary(inbox, v) for v in rows]})

    return await handle(go)


# ------------------------------------------------------------------------------------------ send


def draft_from(body: dict[str, Any]) -> outgoing.Draft:
    def text(name: str, *alts: str) -> str | None:
        for key in (name, *alts):
            v = body.get(key)
            if v is not None:
                if not isinstance(v, str):
                    raise ApiError(400, "INVALID_REQUEST", f"{key} must be a string", field=key)
                return v
        return None

    return outgoing.Draft(
        to=outgoing.address_list(body.get("to"), "to"),
        cc=outgoing.address_list(body.get("cc"), "cc"),
        bcc=outgoing.address_list(body.get("bcc"), "bcc"),
        subject=text("subject") or "",
        text=text("plainBody", "text"),
        html=text("htmlBody", "html"),
        reply_to=outgoing.address_list(body.get("replyTo"), "replyTo"),
    )


async def parent_message(svc: Services, inbox: Principal, body: dict[str, Any]) -> Message | None:
    ref = body.get("replyToMessageId")
    if ref is None:
        ref = body.get("inReplyTo")
    if ref is None or ref == "":
        return None
    if not isinstance(ref, str | int):
        raise ApiError(400, "INVALID_REQUEST", "replyToMessageId must be a string")
    ref = str(ref)
    if ref.isdigit():
        v = await api_views.get_message(svc, inbox.id, int(ref))
        parent = v.message if v is not None else None
    else:
        parent = await api_views.find_by_header_id(svc, inbox.id, ref)
    if parent is None:
        raise ApiError(404, "NOT_FOUND", f"message {ref} to reply to not found")
    return parent


async def send_as(request: Request, ctx: KeyContext, inbox: Principal, d: outgoing.Draft,
                  parent: Message | None) -> dict[str, Any]:
    """The shared tail of send and draft send: submit and render `{id, threadId, status, messageId}`."""
    from mailwright.delivery.limits import SendLimitExceeded
    from mailwright.delivery.submit import SenderNotAllowed

    svc = services(request)
    if inbox.status != "active":
        raise ApiError(403, "INBOX_PAUSED", "this inbox is paused")
    async with svc.db.read() as s:
        from mailwright.directory import inboxes

        addrs = await inboxes.addresses(s, inbox.id)
    sender = next((a for a, primary in addrs if primary), inbox.name)
    account = Account(principal_id=inbox.id, tenant_id=inbox.tenant_id, name=inbox.name)
    try:
        sent = await outgoing.send(svc, account, sender, inbox.display_name, d, parent=parent,
                                   client_ip=client_ip(request))
    except SendLimitExceeded as exc:
        raise ApiError(429, "RATE_LIMITED", str(exc) or "send limit reached", retryAfter=exc.retry_after) from None
    except SenderNotAllowed as exc:
        raise ApiError(403, "FORBIDDEN", str(exc)) from None
    status = "queued" if sent.queued else "sent" if sent.local else "failed"
    out: dict[str, Any] = {"id": str(sent.message_id) if sent.message_id is not None else None,
                           "threadId": sent.thread_id, "status": status, "messageId": sent.rfc_message_id}
    if sent.rejected:
        out["rejected"] = sent.rejected
    return out


@router.post("/inboxes/{inbox_id}/send")
async def send(inbox_id: str, request: Request) -> Response:
    async def go() -> Response:
        ctx = await require_key(request)
        inbox = await inbox_for(request, inbox_id, ctx)
        body = await json_object(request)
        d = draft_from(body)
        parent = await parent_message(services(request), inbox, body)
        return JSONResponse(await send_as(request, ctx, inbox, d, parent))

    return await with_retry_after(await idempotent(request, go))


async def with_retry_after(resp: Response) -> Response:
    """A 429 body carries retryAfter; mirror it in the Retry-After header."""
    if resp.status_code == 429 and "retry-after" not in resp.headers:
        import json

        try:
            ra = json.loads(bytes(resp.body)).get("retryAfter")
        except (ValueError, AttributeError):
            ra = None
        if ra is not None:
            resp.headers["Retry-After"] = str(ra)
    return resp

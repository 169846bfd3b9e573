"""`/api/messages...`: the signed-in mailbox's mail (JWT).

List: 30 per page, newest first, no total (`?page=` from 1; a bad page is 400). Items carry
`id` (the message row id, as a string), `sender` (the SMTP envelope sender), `from` (the From
address), `subject`, `preview_text`, `size` (bytes), `created_at` (when it arrived). The single
message adds `address` (the mailbox), `text_body`, `html_body` and `attachments`
(`index, filename, content_type, size`); `/source` is the raw `message/rfc822`;
`/attachments/{index}` the decoded bytes with the part's content type and a Content-Disposition
naming the file. DELETE removes the message from every mailbox (IMAP sees the expunge) and
frees its quota.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from mailwright.api.auth import services
from mailwright.api.mailcx.common import McxError, handle, iso, require_account
from mailwright.mailstore import api_views, entries
from mailwright.mailstore.api_views import MessageView
from mailwright.services import Services
from mailwright.storage.models import Message

router = APIRouter(prefix="/api", tags=["mail.cx: messages"])

PAGE_SIZE = 30


def page_of(request: Request) -> int:
    raw = request.query_params.get("page", "1")
    try:
        page = int(raw)
    except ValueError:
        raise McxError("invalid_request", "page must be a positive integer") from None
    if page < 1 or page > 1_000_000:
        raise McxError("invalid_request", "page must be a positive integer")
    return page


def item_json(m: Message) -> dict[str, Any]:
    return {"id": str(m.id), "sender": m.mail_from or "", "from": m.from_addr or "", "subject": m.subject or "",
            "preview_text": m.preview or "", "size": int(m.size), "created_at": iso(m.internal_date)}


async def list_page(svc: Services, principal_id: str, page: int) -> list[dict[str, Any]]:
    views = await api_views.list_messages(svc, principal_id, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
    return [item_json(v.message) for v in views]


def message_id_of(raw: str) -> int:
    if not raw.isdigit() or len(raw) > 18:
        raise McxError("not_found", "message not found")
    return int(raw)


async def find(svc: Services, principal_id: str, raw_id: str) -> MessageView:
    view = await api_views.get_message(svc, principal_id, message_id_of(raw_id))
    if view is None:
        raise McxError("not_found", "message not found")
    return view


@router.get("/messages")
async def list_messages(request: Request) -> Response:
    async def go() -> Response:
        account = await require_account(request)
        return JSONResponse(await list_page(services(request), account.id, page_of(request)))

    return await handle(go)


@router.get("/messages/{message_id}")
async def get_message(message_id: str, request: Request) -> Response:
    async def go() -> Response:
        account = await require_account(request)
        svc = services(request)
        view = await find(svc, account.id, message_id)
        raw, parsed = await api_views.content(svc, view.message)
        out = item_json(view.message)
        out.update({
            "address": account.name, "text_body": parsed.text_body or "", "html_body": parsed.html_body or "",
            # size = decoded bytes (what the download returns), not the encoded MIME part's size
            "attachments": [{"index": a.index, "filename": a.filename or f"attachment-{a.index}",
                             "content_type": a.content_type, "size": len(api_views.attachment_data(raw, a))}
                            for a in parsed.attachments],
        })
        return JSONResponse(out)

    return await handle(go)


@router.delete("/messages/{message_id}", status_code=204)
async def delete_message(message_id: str, request: Request) -> Response:
    async def go() -> Response:
        account = await require_account(request)
        if not await entries.remove_message(services(request), account.id, message_id_of(message_id)):
            raise McxError("not_found", "message not found")
        return Response(status_code=204)

    return await handle(go)


@router.get("/messages/{message_id}/source")
async def get_source(message_id: str, request: Request) -> Response:
    async def go() -> Response:
        account = await require_account(request)
        svc = services(request)
        view = await find(svc, account.id, message_id)
        raw, _ = await api_views.content(svc, view.message)
        return Response(raw, media_type="message/rfc822",
                        headers={"Content-Disposition": f'attachment; filename="{view.message.id}.eml"'})

    return await handle(go)


def _disposition(filename: str) -> str:
    ascii_name = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in filename)
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"


@router.get("/messages/{message_id}/attachments/{index}")
async def get_attachment(message_id: str, index: str, request: Request) -> Response:
    async def go() -> Response:
        account = await require_account(request)
        svc = services(request)
        view = await find(svc, account.id, message_id)
        raw, parsed = await api_views.content(svc, view.message)
        for a in parsed.attachments:
            if str(a.index) == index:
                data = api_views.attachment_data(raw, a)
                name = a.filename or f"attachment-{a.index}"
                return Response(data, media_type=a.content_type or "application/octet-stream",
                                headers={"Content-Disposition": _disposition(name)})
        raise McxError("not_found", "attachment not found")

    return await handle(go)

"""The Pro API (`/pro/api`): a Pro user's mailboxes, custom domains, webhooks and tokens.

Credentials: a `tm_pro_` token (`Authorization: Bearer`), or the Pro owner's own JWT. Everything
is scoped to the Pro user's tenant (see `directory.selfservice`); another Pro user's objects are
404 `not_found`. Errors in the mail.cx shape (`api/mailcx/common.py`).

* `GET /accounts` (`{id, address, role, quota, used, created_at}` each), `DELETE /accounts/{id}`
  → 204, `PUT /accounts/{id}/reset-password {password}` → 200 `{id, address}` (the mailbox's
  old JWTs stop working), `GET /accounts/{id}/messages?page=` (as `/api/messages`).
* `GET/POST /domains` (`{domain}` → 201), `POST /domains/{id}/verify` (looks up DNS now; 200 with
  the domain, `verify_status` stays `pending` until the TXT record is found), `DELETE
  /domains/{id}` → 204 (removes its mailboxes). Fields: `id, domain, verify_status
  pending|verified, verify_token, verified_at, mx_configured, dns_records[]` (`type, name,
  value`, `priority` for MX) and `created_at`.
* `GET/POST /webhooks` (`{url, events}` → 201 with `secret`, shown once), `DELETE
  /webhooks/{id}` → 204, `POST /webhooks/{id}/rotate` → `{id, secret}`, `GET
  /webhooks/{id}/deliveries`. Events `message.received`, `message.bounced` for every mailbox
  on the Pro user's domains, signed and retried by `events.webhooks` (dialect "mailcx", payload
  `{id, event, created_at, data: {account_id, address, message_id, from, subject,
  preview_text, created_at}}`).
* `GET/POST /tokens` (`{name}` → 201 with `token`, shown once), `DELETE /tokens/{id}` → 204.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from mailwright.api.auth import services
from mailwright.api.mailcx.accounts import me_json
from mailwright.api.mailcx.common import McxError, handle, iso, json_object, require_pro
from mailwright.api.mailcx.messages import list_page, page_of
from mailwright.directory import selfservice
from mailwright.directory.selfservice import TXT_PREFIX
from mailwright.events import webhooks
from mailwright.events.webhooks import MailEvent, Scope
from mailwright.storage.models import ApiKey, Domain, Webhook, WebhookDelivery

router = APIRouter(prefix="/pro/api", tags=["mail.cx: pro"])

DIALECT = "mailcx"
EVENTS = ("message.received", "message.bounced")


def mailcx_payload(ev: MailEvent) -> dict[str, Any]:
    return {
        "id": ev.id,
        "event": ev.type,
        "created_at": iso(ev.created_at),
        "data": {
            "account_id": ev.principal_id,
            "address": ev.inbox_address,
            "message_id": str(ev.message_id),
            "from": ev.from_addr,
            "subject": ev.subject,
            "preview_text": ev.preview,
            "created_at": iso(ev.received_at),
        },
    }


webhooks.register_formatter(DIALECT, mailcx_payload)


# ------------------------------------------------------------------------------------ accounts


@router.get("/accounts")
async def list_accounts(request: Request) -> Response:
    async def go() -> Response:
        pro = await require_pro(request)
        rows = await selfservice.list_accounts(services(request), pro)
        return JSONResponse([me_json(p) for p in rows])

    return await handle(go)


@router.delete("/accounts/{account_id}", status_code=204)
async def delete_account(account_id: str, request: Request) -> Response:
    async def go() -> Response:
        pro = await require_pro(request)
        await selfservice.delete_pro_account(services(request), pro, account_id)
        return Response(status_code=204)

    return await handle(go)


@router.put("/accounts/{account_id}/reset-password")
async def reset_password(account_id: str, request: Request) -> Response:
    async def go() -> Response:
        pro = await require_pro(request)
        body = await json_object(request)
        svc = services(request)
        await selfservice.reset_password(svc, pro, account_id, body.get("password"))
        p = await selfservice.get_pro_account(svc, pro, account_id)
        return JSONResponse({"id": p.id, "address": p.name})

    return await handle(go)


@router.get("/accounts/{account_id}/messages")
async def account_messages(account_id: str, request: Request) -> Response:
    async def go() -> Response:
        pro = await require_pro(request)
        svc = services(request)
        p = await selfservice.get_pro_account(svc, pro, account_id)
        return JSONResponse(await list_page(svc, p.id, page_of(request)))

    return await handle(go)


# ------------------------------------------------------------------------------------ domains


def domain_json(d: Domain, hostname: str) -> dict[str, Any]:
    return {
        "id": d.id,
        "domain": d.name,
        "verify_status": "verified" if d.verified else "pending",
        "verify_token": d.verify_token,
        "verified_at": iso(d.verified_at),
        "mx_configured": bool(d.mx_configured),
        "dns_records": [
            {"type": "TXT", "name": d.name, "value": f"{TXT_PREFIX}{d.verify_token or ''}"},
            {"type": "MX", "name": d.name, "value": hostname, "priority": 10},
        ],
        "created_at": iso(d.created_at),
    }


@router.get("/domains")
async def list_domains(request: Request) -> Response:
    async def go() -> Response:
        pro = await require_pro(request)
        svc = services(request)
        rows = await selfservice.list_custom_domains(svc, pro)
        return JSONResponse([domain_json(d, svc.settings.hostname) for d in rows])

    return await handle(go)


@router.post("/domains", status_code=201)
async def add_domain(request: Request) -> Response:
    async def go() -> Response:
        pro = await require_pro(request)
        body = await json_object(request)
        svc = services(request)
        d = await selfservice.add_custom_domain(svc, pro, body.get("domain"))
        return JSONResponse(domain_json(d, svc.settings.hostname), status_code=201)

    return await handle(go)


@router.post("/domains/{domain_id}/verify")
async def verify_domain(domain_id: str, request: Request) -> Response:
    async def go() -> Response:
        pro = await require_pro(request)
        svc = services(request)
        d = await selfservice.verify_custom_domain(svc, pro, domain_id)
        return JSONResponse(domain_json(d, svc.settings.hostname))

    return await handle(go)


@router.delete("/domains/{domain_id}", status_code=204)
async def delete_domain(domain_id: str, request: Request) -> Response:
    async def go() -> Response:
        pro = await require_pro(request)
        await selfservice.delete_custom_domain(services(request), pro, domain_id)
        return Response(status_code=204)

    return await handle(go)


# ------------------------------------------------------------------------------------ webhooks


def hook_json(h: Webhook) -> dict[str, Any]:
    return {"id": h.id, "url": h.url, "events": list(h.events or []), "active": h.active,
            "created_at": iso(h.created_at)}


def delivery_json(d: WebhookDelivery) -> dict[str, Any]:
    return {"id": str(d.id), "event_id": d.event_id, "event": d.event_type, "status": d.status,
            "attempts": d.attempts, "last_status_code": d.last_status_code, "last_error": d.last_error,
            "created_at": iso(d.created_at), "delivered_at": iso(d.delivered_at),
            "next_attempt_at": iso(d.next_attempt_at) if d.status == "pending" else None}


@router.get("/webhooks")
async def list_webhooks(request: Request) -> Response:
    async def go() -> Response:
        pro = await require_pro(request)
        async with services(request).db.read() as s:
            rows = await webhooks.list_webhooks(s, Scope(tenant_id=pro.tenant_id), dialect=DIALECT)
        return JSONResponse([hook_json(h) for h in rows])

    return await handle(go)


@router.post("/webhooks", status_code=201)
async def create_webhook(request: Request) -> Response:
    async def go() -> Response:
        pro = await require_pro(request)
        body = await json_object(request)
        svc = services(request)
        async with svc.db.write() as s:
            hook, secret = await webhooks.create_webhook(
                svc, s, Scope(tenant_id=pro.tenant_id), body.get("url"), body.get("events"), dialect=DIALECT,
                allowed=EVENTS, created_by=pro.owner_id)
            out = {**hook_json(hook), "secret": secret}
        return JSONResponse(out, status_code=201)

    return await handle(go)


@router.delete("/webhooks/{webhook_id}", status_code=204)
async def delete_webhook(webhook_id: str, request: Request) -> Response:
    async def go() -> Response:
        pro = await require_pro(request)
        svc = services(request)
        async with svc.db.write() as s:
            await webhooks.delete_webhook(svc, s, Scope(tenant_id=pro.tenant_id), webhook_id, dialect=DIALECT)
        return Response(status_code=204)

    return await handle(go)


@router.post("/webhooks/{webhook_id}/rotate")
async def rotate_webhook(webhook_id: str, request: Request) -> Response:
    async def go() -> Response:
        pro = await require_pro(request)
        async with services(request).db.write() as s:
            secret = await webhooks.rotate_secret(s, Scope(tenant_id=pro.tenant_id), webhook_id, dialect=DIALECT)
        return JSONResponse({"id": webhook_id, "secret": secret})

    return await handle(go)


@router.get("/webhooks/{webhook_id}/deliveries")
async def webhook_deliveries(webhook_id: str, request: Request) -> Response:
    async def go() -> Response:
        pro = await require_pro(request)
        async with services(request).db.read() as s:
            await webhooks.get_webhook(s, Scope(tenant_id=pro.tenant_id), webhook_id, dialect=DIALECT)
            rows = await webhooks.list_deliveries(s, webhook_id)
        return JSONResponse([delivery_json(d) for d in rows])

    return await handle(go)


# ------------------------------------------------------------------------------------ tokens


def token_json(k: ApiKey) -> dict[str, Any]:
    return {"id": k.id, "name": k.name, "hint": k.hint, "created_at": iso(k.created_at),
            "last_used_at": iso(k.last_used_at)}


@router.get("/tokens")
async def list_tokens(request: Request) -> Response:
    async def go() -> Response:
        pro = await require_pro(request)
        rows = await selfservice.list_pro_tokens(services(request), pro)
        return JSONResponse([token_json(k) for k in rows])

    return await handle(go)


@router.post("/tokens", status_code=201)
async def create_token(request: Request) -> Response:
    async def go() -> Response:
        pro = await require_pro(request)
        body = await json_object(request)
        name = body.get("name")
        if name is not None and not isinstance(name, str):
            raise McxError("invalid_request", "name must be a string")
        row, token = await selfservice.create_pro_token(services(request), pro, name)
        return JSONResponse({**token_json(row), "token": token}, status_code=201)

    return await handle(go)


@router.delete("/tokens/{token_id}", status_code=204)
async def revoke_token(token_id: str, request: Request) -> Response:
    async def go() -> Response:
        pro = await require_pro(request)
        await selfservice.revoke_pro_token(services(request), pro, token_id)
        return Response(status_code=204)

    return await handle(go)

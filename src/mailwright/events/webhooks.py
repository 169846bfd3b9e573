"""Webhooks and the mail-event feed they share with SSE: registration, mapping, durable delivery.

Events. The change feed (`events.bus`) says "message added to mailbox M"; API users want
`message.received` (a message arrived in an INBOX), `message.bounced` (what arrived is a DSN:
`multipart/report; report-type=delivery-status`) and `message.sent` (published by an API send,
see `publish_sent`). `describe` turns a bus event into a dialect-neutral `MailEvent`; each
dialect registers a formatter for its payload shape (`register_formatter`). Event ids are
derived from (type, message row id), so every process that sees the same bus event computes the
same id: with several nodes on PostgreSQL each one enqueues the delivery, and the unique
(webhook, event id) constraint keeps exactly one.

Delivery is at-least-once: a delivery row is committed before the first attempt; a node claims
due rows (`locked_until`, `FOR UPDATE SKIP LOCKED` on PostgreSQL) and POSTs the JSON body with

    X-Mailwright-Event-Id:   evt_...            (also the payload's "id": de-duplicate on it)
    X-Mailwright-Event-Type: message.received
    X-Mailwright-Signature:  t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + raw body)>

Receivers recompute the HMAC over the raw body bytes and reject a `t` older than ~5 minutes
(replay protection; the signature is recomputed for every attempt). A 2xx ends it; anything else
(or no answer in 10 s) is retried with exponential backoff (base * 2^(n-1), +-10 % jitter) up
to `webhook_max_attempts`, then the delivery is marked failed. Rows stay as the delivery log.
Pending rows survive a restart. Each node caches the webhook list for 5 s (so mail to tenants
without webhooks costs nothing): a webhook registered through another node starts receiving
within 5 s; one registered through this node at once. What is not durable: a bus event seen by no running node
(between a message's commit and the enqueue, the node crashed) is not replayed.
The secret must be usable to sign, so it is stored as is (like Stripe's `whsec_`) and shown by
the API only at creation and rotation. URLs may point anywhere http(s), loopback included:
the platform admin decides who gets keys; put an egress filter in front in hostile setups.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.parser
import hashlib
import hmac
import json
import logging
import random
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from mailwright.directory.errors import Invalid, MissingField, NotFound
from mailwright.events.bus import Event
from mailwright.services import Services
from mailwright.storage.models import Mailbox, Message, Principal, Webhook, WebhookDelivery, utcnow

log = logging.getLogger(__name__)

MAIL_EVENTS = ("message.received", "message.sent", "message.bounced")
SIGNATURE_HEADER = "X-Mailwright-Signature"
EVENT_ID_HEADER = "X-Mailwright-Event-Id"
EVENT_TYPE_HEADER = "X-Mailwright-Event-Type"
ATTEMPT_TIMEOUT = 10.0
LOCK_SECONDS = 30  # > one attempt (10 s timeout + the write); a crashed node's claims expire
LOG_DAYS = 30


# ------------------------------------------------------------------------------------------ scope


@dataclass(frozen=True)
class Scope:
    """Who owns / may see a webhook or an event: None everywhere = the platform (everything)."""

    tenant_id: str | None = None
    workspace_id: str | None = None
    principal_id: str | None = None

    def covers(self, tenant_id: str | None, workspace_id: str | None, principal_id: str | None) -> bool:
        if self.principal_id is not None:
            return principal_id == self.principal_id
        if self.workspace_id is not None:
            return workspace_id == self.workspace_id
        if self.tenant_id is not None:
            return tenant_id == self.tenant_id
        return True


# ------------------------------------------------------------------------------------------ events


@dataclass(frozen=True)
class MailEvent:
    id: str
    type: str
    created_at: datetime
    principal_id: str
    tenant_id: str | None
    workspace_id: str | None
    inbox_address: str
    message_id: int
    thread_id: str
    mailbox: str
    from_addr: str
    from_display: str
    to: list[str]
    subject: str
    preview: str
    rfc_message_id: str | None
    received_at: datetime
    extra: dict[str, Any] = field(default_factory=dict)


def event_id(kind: str, msg: Message) -> str:
    """Same for every process that sees the event; the blob hash and creation time keep a
    reused row id (SQLite reuses the highest deleted rowid) from repeating an old event id."""
    seed = f"{kind}:{msg.id}:{msg.blob_hash}:{msg.created_at.isoformat() if msg.created_at else ''}"
    return "evt_" + hashlib.sha256(seed.encode()).hexdigest()[:32]


async def _is_dsn(svc: Services, msg: Message) -> bool:
    try:
        raw = await svc.blobs.get(msg.blob_hash)
    except (OSError, KeyError):
        return False
    head = raw.split(b"\r\n\r\n", 1)[0] if b"\r\n\r\n" in raw else raw.split(b"\n\n", 1)[0]
    h = email.parser.BytesHeaderParser().parsebytes(head + b"\r\n\r\n")
    return (h.get_content_type() == "multipart/report"
            and (h.get_param("report-type") or "").lower() == "delivery-status")  # type: ignore[union-attr]


async def describe(svc: Services, ev: Event, accept: Callable[[Principal], bool] | None = None
                   ) -> MailEvent | None:
    """The API-level mail event a bus event means, or None (flags, expunges, other mailboxes,
    or an account `accept` turns down — checked before the message is read)."""
    if ev.type not in ("message.added", "message.sent"):
        return None
    mid = ev.data.get("message_id")
    if not isinstance(mid, int):
        return None
    async with svc.db.read() as s:
        p = await s.get(Principal, ev.principal_id)
        if p is None or (accept is not None and not accept(p)):
            return None
        msg = await s.get(Message, mid)
        box = await s.get(Mailbox, ev.mailbox_id) if ev.mailbox_id is not None else None
    if msg is None:
        return None
    if ev.type == "message.added":
        if box is None or box.name != "INBOX":
            return None
        kind = "message.bounced" if await _is_dsn(svc, msg) else "message.received"
    else:
        kind = "message.sent"
    return MailEvent(
        id=event_id(kind, msg), type=kind, created_at=utcnow(), principal_id=p.id, tenant_id=p.tenant_id,
        workspace_id=p.workspace_id, inbox_address=p.name, message_id=msg.id, thread_id=msg.thread_id,
        mailbox=box.name if box is not None else "", from_addr=msg.from_addr, from_display=msg.from_display,
        to=[a for a in (msg.to_addrs or "").split(",") if a], subject=msg.subject, preview=msg.preview,
        rfc_message_id=msg.message_id_header, received_at=msg.internal_date, extra=dict(ev.data),
    )


async def publish_sent(svc: Services, principal_id: str, mailbox_id: int | None, message_id: int) -> None:
    """Announce that an account sent a message (its stored Sent copy is `message_id`)."""
    await svc.events.publish(Event(type="message.sent", principal_id=principal_id, mailbox_id=mailbox_id,
                                   data={"message_id": message_id}))


def _iso(d: datetime) -> str:
    return d.isoformat().replace("+00:00", "Z")


def agent_payload(ev: MailEvent) -> dict[str, Any]:
    """The myagentmail-style body (also the default for any dialect without its own)."""
    return {
        "id": ev.id,
        "type": ev.type,
        "createdAt": _iso(ev.created_at),
        "data": {
            "inboxId": ev.principal_id,
            "inbox": ev.inbox_address,
            "workspaceId": ev.workspace_id,
            "messageId": str(ev.message_id),
            "threadId": ev.thread_id,
            "from": ev.from_addr,
            "to": ev.to,
            "subject": ev.subject,
            "preview": ev.preview,
            "rfcMessageId": ev.rfc_message_id,
            "receivedAt": _iso(ev.received_at),
        },
    }


_FORMATTERS: dict[str, Callable[[MailEvent], dict[str, Any]]] = {"agent": agent_payload}


def register_formatter(dialect: str, fn: Callable[[MailEvent], dict[str, Any]]) -> None:
    """A dialect's webhook payload shape (must keep an "id" field = the event id)."""
    _FORMATTERS[dialect] = fn


def payload_for(dialect: str, ev: MailEvent) -> dict[str, Any]:
    return _FORMATTERS.get(dialect, agent_payload)(ev)


@contextlib.asynccontextmanager
async def mail_events(svc: Services, scope: Scope, types: set[str] | None = None
                      ) -> AsyncIterator[asyncio.Queue[MailEvent]]:
    """A live feed of mail events within `scope` (what SSE streams)."""
    out: asyncio.Queue[MailEvent] = asyncio.Queue(maxsize=1000)

    async def pump(q: asyncio.Queue[Event]) -> None:
        while True:
            ev = await q.get()
            try:
                me = await describe(svc, ev, lambda p: scope.covers(p.tenant_id, p.workspace_id, p.id))
            except Exception:  # noqa: BLE001 - one bad event must not end the stream
                log.warning("cannot describe event", exc_info=True)
                continue
            if me is None or not scope.covers(me.tenant_id, me.workspace_id, me.principal_id):
                continue
            if types and me.type not in types:
                continue
            with contextlib.suppress(asyncio.QueueFull):
                out.put_nowait(me)

    with svc.events.subscribe(None, maxsize=10000) as q:
        task = asyncio.create_task(pump(q))
        try:
            yield out
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


# ------------------------------------------------------------------------------------------ registry


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def check_url(url: object) -> str:
    if url is None or url == "":
        raise MissingField("field 'url' is required", field="url")
    if not isinstance(url, str) or len(url) > 2048:
        raise Invalid("url must be an http(s) URL", field="url", value=url)
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Invalid("url must be an http(s) URL", field="url", value=url)
    return url.strip()


def check_events(events: object, allowed: tuple[str, ...] = MAIL_EVENTS) -> list[str]:
    if events is None:
        return list(allowed)
    if not isinstance(events, list) or not events or not all(isinstance(e, str) for e in events):
        raise Invalid(f"events must be a non-empty list of: {', '.join(allowed)}", field="events")
    bad = [e for e in events if e not in allowed]
    if bad:
        raise Invalid(f"unknown event {bad[0]!r}; known: {', '.join(allowed)}", field="events", value=bad[0])
    return list(dict.fromkeys(events))


_cache: dict[int, tuple[float, list[tuple[str, str | None, str | None, str | None, list[str], str]]]] = {}


def _invalidate(svc: Services) -> None:
    _cache.pop(id(svc), None)


async def create_webhook(svc: Services, session: AsyncSession, scope: Scope, url: object, events: object, *,
                         dialect: str = "agent", allowed: tuple[str, ...] = MAIL_EVENTS,
                         created_by: str | None = None) -> tuple[Webhook, str]:
    """Returns the row and its secret (shown to the caller once)."""
    hook = Webhook(dialect=dialect, tenant_id=scope.tenant_id, workspace_id=scope.workspace_id,
                   principal_id=scope.principal_id, url=check_url(url), events=check_events(events, allowed),
                   secret=new_secret(), active=True, created_by=created_by)
    session.add(hook)
    await session.flush()
    _invalidate(svc)
    return hook, hook.secret


def _visible(scope: Scope, hook: Webhook) -> bool:
    if scope.principal_id is not None:
        return hook.principal_id == scope.principal_id
    if scope.workspace_id is not None:
        return hook.workspace_id == scope.workspace_id or (
            hook.principal_id is not None and hook.workspace_id == scope.workspace_id)
    if scope.tenant_id is not None:
        return hook.tenant_id == scope.tenant_id
    return True


async def list_webhooks(session: AsyncSession, scope: Scope, *, dialect: str = "agent") -> list[Webhook]:
    q = select(Webhook).where(Webhook.dialect == dialect)
    if scope.tenant_id is not None:
        q = q.where(Webhook.tenant_id == scope.tenant_id)
    rows = list((await session.execute(q.order_by(Webhook.created_at))).scalars())
    return [h for h in rows if _visible(scope, h)]


async def get_webhook(session: AsyncSession, scope: Scope, webhook_id: str, *, dialect: str = "agent") -> Webhook:
    hook = await session.get(Webhook, webhook_id)
    if hook is None or hook.dialect != dialect or not _visible(scope, hook):
        raise NotFound(f"webhook {webhook_id} not found", field="id", value=webhook_id)
    return hook


async def delete_webhook(svc: Services, session: AsyncSession, scope: Scope, webhook_id: str, *,
                         dialect: str = "agent") -> None:
    hook = await get_webhook(session, scope, webhook_id, dialect=dialect)
    await session.delete(hook)
    await session.flush()
    _invalidate(svc)


async def rotate_secret(session: AsyncSession, scope: Scope, webhook_id: str, *, dialect: str = "agent") -> str:
    """A new secret takes effect for the next attempt (pending retries included)."""
    hook = await get_webhook(session, scope, webhook_id, dialect=dialect)
    hook.secret = new_secret()
    await session.flush()
    return hook.secret


async def list_deliveries(session: AsyncSession, webhook_id: str, *, limit: int = 100) -> list[WebhookDelivery]:
    q = (select(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id)
         .order_by(WebhookDelivery.id.desc()).limit(limit))
    return list((await session.execute(q)).scalars())


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_signature(secret: str, header: str, body: bytes, *, tolerance: int = 300, now: float | None = None) -> bool:
    """What a receiver does (kept here for tests and as the reference implementation)."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        ts = int(fields["t"])
    except (ValueError, KeyError):
        return False
    if abs((now or time.time()) - ts) > tolerance:
        return False
    expected = sign(secret, ts, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, fields.get("v1", ""))


# ------------------------------------------------------------------------------------------ dispatcher


def _covered_by(scopes: list[Scope]) -> Callable[[Principal], bool]:
    return lambda p: any(sc.covers(p.tenant_id, p.workspace_id, p.id) for sc in scopes)


class WebhookDispatcher:
    """Background task: bus events -> delivery rows -> signed POSTs with retries."""

    def __init__(self, svc: Services, *, poll_interval: float = 1.0) -> None:
        self.svc = svc
        self.poll_interval = poll_interval
        self._wake = asyncio.Event()
        self._client: httpx.AsyncClient | None = None

    async def run(self) -> None:
        self._client = httpx.AsyncClient(timeout=ATTEMPT_TIMEOUT, follow_redirects=False,
                                         headers={"User-Agent": "Mailwright-Webhooks/1"})
        try:
            with self.svc.events.subscribe(None, maxsize=10000) as q:
                consumer = asyncio.create_task(self._consume(q))
                try:
                    await self._send_loop()
                finally:
                    consumer.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await consumer
        finally:
            await self._client.aclose()

    async def _hooks(self) -> list[tuple[str, str | None, str | None, str | None, list[str], str]]:
        cached = _cache.get(id(self.svc))
        now = time.monotonic()
        if cached is not None and cached[0] > now:
            return cached[1]
        async with self.svc.db.read() as s:
            rows = (await s.execute(select(Webhook).where(Webhook.active.is_(True)))).scalars().all()
            hooks = [(h.id, h.tenant_id, h.workspace_id, h.principal_id, list(h.events or []), h.dialect)
                     for h in rows]
        _cache[id(self.svc)] = (now + 5.0, hooks)
        return hooks

    async def _consume(self, q: asyncio.Queue[Event]) -> None:
        while True:
            ev = await q.get()
            try:
                if ev.type not in ("message.added", "message.sent"):
                    continue
                hooks = await self._hooks()
                if not hooks:
                    continue
                scopes = [Scope(h[1], h[2], h[3]) for h in hooks]
                me = await describe(self.svc, ev, _covered_by(scopes))
                if me is not None:
                    await self.enqueue(me)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - keep consuming
                log.warning("webhook enqueue failed", exc_info=True)

    async def enqueue(self, me: MailEvent) -> int:
        hooks = [h for h in await self._hooks()
                 if me.type in h[4] and Scope(h[1], h[2], h[3]).covers(me.tenant_id, me.workspace_id, me.principal_id)]
        added = 0
        for hook_id, _t, _w, _p, _events, dialect in hooks:
            try:
                async with self.svc.db.write() as s:
                    exists = (await s.execute(select(WebhookDelivery.id).where(
                        WebhookDelivery.webhook_id == hook_id, WebhookDelivery.event_id == me.id))).first()
                    if exists or await s.get(Webhook, hook_id) is None:
                        continue
                    s.add(WebhookDelivery(webhook_id=hook_id, event_id=me.id, event_type=me.type,
                                          payload=payload_for(dialect, me), next_attempt_at=utcnow()))
                added += 1
            except IntegrityError:  # another node enqueued the same event first
                continue
        if added:
            self._wake.set()
        return added

    async def _claim(self, limit: int = 20) -> list[tuple[int, str, str, dict[str, Any], int]]:
        now = utcnow()
        async with self.svc.db.write() as s:
            q = (select(WebhookDelivery, Webhook.url, Webhook.secret)
                 .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
                 .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now,
                        (WebhookDelivery.locked_until.is_(None)) | (WebhookDelivery.locked_until < now))
                 .order_by(WebhookDelivery.next_attempt_at).limit(limit)
                 .with_for_update(skip_locked=True, of=WebhookDelivery))
            rows = (await s.execute(q)).all()
            for d, _url, _secret in rows:
                d.locked_until = now + timedelta(seconds=LOCK_SECONDS)
            return [(d.id, url, secret, d.payload, d.attempts) for d, url, secret in rows]

    async def _prune(self) -> None:
        """The delivery log keeps 30 days of finished deliveries."""
        cutoff = utcnow() - timedelta(days=LOG_DAYS)
        async with self.svc.db.write() as s:
            await s.execute(delete(WebhookDelivery).where(WebhookDelivery.status != "pending",
                                                          WebhookDelivery.created_at < cutoff))

    async def _send_loop(self) -> None:
        next_prune = time.monotonic() + 60
        while True:
            if time.monotonic() >= next_prune:
                next_prune = time.monotonic() + 3600
                with contextlib.suppress(Exception):
                    await self._prune()
            try:
                batch = await self._claim()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - database hiccup: try again shortly
                log.warning("webhook claim failed", exc_info=True)
                batch = []
            if batch:
                await asyncio.gather(*(self._attempt(*item) for item in batch), return_exceptions=True)
                continue
            self._wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll_interval)

    async def _attempt(self, delivery_id: int, url: str, secret: str, payload: dict[str, Any],
                       attempts: int) -> None:
        assert self._client is not None
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        ts = int(time.time())
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(secret, ts, body),
            EVENT_ID_HEADER: str(payload.get("id", "")),
            EVENT_TYPE_HEADER: str(payload.get("type", "")),
            "X-Mailwright-Delivery-Attempt": str(attempts + 1),
        }
        code: int | None = None
        err: str | None = None
        try:
            resp = await self._client.post(url, content=body, headers=headers)
            code = resp.status_code
            if not 200 <= code < 300:
                err = f"HTTP {code}"
        except httpx.HTTPError as exc:
            err = f"{type(exc).__name__}: {exc}"[:500]
        now = utcnow()
        n = attempts + 1
        values: dict[str, Any] = {"attempts": n, "last_status_code": code, "last_error": err, "locked_until": None}
        if err is None:
            values.update(status="delivered", delivered_at=now)
        elif n >= self.svc.settings.webhook_max_attempts:
            values.update(status="failed")
        else:
            delay = self.svc.settings.webhook_retry_base_seconds * (2 ** (n - 1)) * random.uniform(0.9, 1.1)
            values.update(next_attempt_at=now + timedelta(seconds=delay))
        async with self.svc.db.write() as s:
            await s.execute(update(WebhookDelivery).where(WebhookDelivery.id == delivery_id).values(**values))


async def run_dispatcher(svc: Services) -> None:
    """The node's dispatcher; restarted after an unexpected error so webhooks never stop for good."""
    while True:
        try:
            await WebhookDispatcher(svc).run()
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001
            log.exception("webhook dispatcher crashed; restarting")
            await asyncio.sleep(1.0)

"""Event bus: in-process fan-out, plus PostgreSQL LISTEN/NOTIFY across processes and nodes.

Publishers call `publish` after their transaction commits. Subscribers (IMAP IDLE, JMAP push,
SSE, webhooks) get an asyncio.Queue per subscription, filtered by account. With PostgreSQL,
every event is also NOTIFYed on one channel; each process LISTENs and re-publishes events that
came from other processes (its own are recognised by the origin id and not delivered twice).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

log = logging.getLogger(__name__)
CHANNEL = "mailwright_events"


@dataclass(frozen=True)
class Event:
    type: str  # message.added | flags.changed | message.expunged | mailbox.changed | account.changed
    principal_id: str
    mailbox_id: int | None = None
    modseq: int | None = None
    uids: tuple[int, ...] = ()
    data: dict[str, Any] = field(default_factory=dict)


class EventBus:
    def __init__(self) -> None:
        self._subs: dict[str | None, set[asyncio.Queue[Event]]] = {}
        self._origin = uuid.uuid4().hex
        self._pg_conn: Any = None
        self._pg_lock = asyncio.Lock()

    @contextlib.contextmanager
    def subscribe(self, principal_id: str | None = None, maxsize: int = 1000) -> Iterator[asyncio.Queue[Event]]:
        """Events for one account (None = every account, for webhooks and the like)."""
        q: asyncio.Queue[Event] = asyncio.Queue(maxsize=maxsize)
        self._subs.setdefault(principal_id, set()).add(q)
        try:
            yield q
        finally:
            subs = self._subs.get(principal_id)
            if subs is not None:
                subs.discard(q)
                if not subs:
                    del self._subs[principal_id]

    def _deliver_local(self, ev: Event) -> None:
        for key in (ev.principal_id, None):
            for q in list(self._subs.get(key, ())):
                try:
                    q.put_nowait(ev)
                except asyncio.QueueFull:
                    # A stalled subscriber loses events, never blocks publishers; it re-syncs
                    # from modseq when it wakes (IMAP, JMAP and SSE all can).
                    pass

    async def publish(self, ev: Event) -> None:
        self._deliver_local(ev)
        if self._pg_conn is not None:
            payload = json.dumps({"o": self._origin, "e": {**asdict(ev), "uids": list(ev.uids)}})
            if len(payload) > 7900:  # NOTIFY payload limit is 8000 bytes
                payload = json.dumps({"o": self._origin, "e": {**asdict(ev), "uids": [], "data": {}}})
            try:
                async with self._pg_lock:
                    await self._pg_conn.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)
            except Exception:  # noqa: BLE001 - a lost notification only delays other nodes' IDLE
                log.warning("pg_notify failed", exc_info=True)

    async def connect_postgres(self, dsn: str) -> None:
        import asyncpg

        self._pg_conn = await asyncpg.connect(dsn)
        await self._pg_conn.add_listener(CHANNEL, self._on_notify)

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            msg = json.loads(payload)
            if msg.get("o") == self._origin:
                return
            e = msg["e"]
            ev = Event(type=e["type"], principal_id=e["principal_id"], mailbox_id=e.get("mailbox_id"),
                       modseq=e.get("modseq"), uids=tuple(e.get("uids") or ()), data=e.get("data") or {})
            self._deliver_local(ev)
        except Exception:  # noqa: BLE001
            log.warning("bad event payload", exc_info=True)

    async def close(self) -> None:
        if self._pg_conn is not None:
            with contextlib.suppress(Exception):
                await self._pg_conn.close()
            self._pg_conn = None

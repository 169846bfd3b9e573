"""Event bus: in-process fan-out, plus a channel between processes that share the database.

Publishers call `publish` after their transaction commits. Subscribers get either an
asyncio.Queue (`subscribe`: webhooks, SSE - consumers that run their own task) or a plain
callback run synchronously inside `publish` (`listen`: the IMAP IDLE hub, which must not wake
10,000 tasks to find the few that care), filtered by account or for every account (None).

Across processes every event is forwarded, with its origin id, to every other process using
the same database, which re-publishes it locally (its own come back never):

* PostgreSQL: NOTIFY on one channel; each process LISTENs on its own connection. If that
  connection drops (PostgreSQL restart), the bus reconnects with backoff, and then publishes a
  local `bus.resync` event: whatever was NOTIFYed meanwhile was lost, so IDLE sessions re-read
  their mailbox.
* SQLite (one host; `serve --workers N` forks N processes on one database file): an
  unconnected AF_UNIX datagram socket per process in the Linux abstract namespace (no socket
  file, so no path-length limit and nothing stale after a crash), and a marker file per process
  in `<database>.events/` (mode 0700, next to the database like SQLite's own -wal and -shm
  files) to find the peers. The events published in one loop iteration leave together, one
  datagram per peer (a group commit publishes dozens at once). Datagrams carry the sender's
  credentials (SO_PASSCRED) and only those from our own uid are accepted, as the abstract
  namespace has no file permissions. A peer whose queue is full gets its datagrams retried
  every 10 ms, in order (up to a bounded backlog, beyond which they are dropped with a
  warning); a marker whose socket is gone (ECONNREFUSED: the process died) is removed.

Why not poll instead (Dovecot checks a mailbox during IDLE every `mailbox_idle_check_interval`
= 30 s besides inotify): to stay within 1 s a per-connection poll would cost 10,000 queries a
second at 10,000 idlers; a datagram per event per peer costs microseconds and makes JMAP/SSE
and webhooks see other workers' events too, exactly as with LISTEN/NOTIFY. A process that
misses an event anyway (backlog overflow) only delays IDLE until the mailbox's next event or
the client's next command, which re-sync from the modseq.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import struct
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
CHANNEL = "mailwright_events"
PG_PAYLOAD_MAX = 7900  # NOTIFY payload limit is 8000 bytes
LOCAL_PAYLOAD_MAX = 60 * 1024  # well under the default datagram limit (net.core.wmem_default)
PEERS_SETTLE_NS = 1_000_000_000  # see _LocalPeers.peers
LOCAL_BACKLOG_MAX = 1000  # datagrams (of up to LOCAL_PAYLOAD_MAX) kept per slow peer before dropping
LOCAL_RETRY_S = 0.01
PG_RECONNECT_MAX_S = 10.0
RESYNC = "bus.resync"  # local only: events from other processes may have been lost

Listener = Callable[["Event"], None]


@dataclass(frozen=True)
class Event:
    type: str  # message.added | flags.changed | message.expunged | mailbox.changed | account.changed | bus.resync
    principal_id: str
    mailbox_id: int | None = None
    modseq: int | None = None
    uids: tuple[int, ...] = ()
    data: dict[str, Any] = field(default_factory=dict)


def _fields(ev: Event, uids: list[int], data: dict[str, Any]) -> dict[str, Any]:
    """The event as a JSON object (dataclasses.asdict deep-copies every value: ~10 µs per
    event, on every delivery)."""
    return {"type": ev.type, "principal_id": ev.principal_id, "mailbox_id": ev.mailbox_id, "modseq": ev.modseq,
            "uids": uids, "data": data}


def _encode(origin: str, ev: Event, limit: int) -> str:
    payload = json.dumps({"o": origin, "e": _fields(ev, list(ev.uids), ev.data)})
    if len(payload) > limit:  # the UIDs are a hint; receivers re-read from the modseq anyway
        payload = json.dumps({"o": origin, "e": _fields(ev, [], {})})
    return payload


def _decode(payload: str | bytes) -> tuple[str, Event]:
    msg = json.loads(payload)
    e = msg["e"]
    return msg.get("o", ""), Event(type=e["type"], principal_id=e["principal_id"], mailbox_id=e.get("mailbox_id"),
                                   modseq=e.get("modseq"), uids=tuple(e.get("uids") or ()), data=e.get("data") or {})


class EventBus:
    def __init__(self) -> None:
        self._subs: dict[str | None, set[asyncio.Queue[Event]]] = {}
        self._listeners: dict[str | None, set[Listener]] = {}
        self._origin = uuid.uuid4().hex
        self._pg_dsn: str | None = None
        self._pg_conn: Any = None
        self._pg_lock = asyncio.Lock()
        self._pg_task: asyncio.Task[None] | None = None
        self._local: _LocalPeers | None = None
        self._closed = False

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

    def add_listener(self, principal_id: str | None, fn: Listener) -> None:
        """Call fn(event) synchronously for each event of one account (None = every account).

        fn runs inside `publish` (or the NOTIFY/datagram callback): it must be quick and must
        not await; an exception is logged and never reaches the publisher."""
        self._listeners.setdefault(principal_id, set()).add(fn)

    def remove_listener(self, principal_id: str | None, fn: Listener) -> None:
        fns = self._listeners.get(principal_id)
        if fns is not None:
            fns.discard(fn)
            if not fns:
                del self._listeners[principal_id]

    @contextlib.contextmanager
    def listen(self, principal_id: str | None, fn: Listener) -> Iterator[None]:
        """`add_listener` for the duration of a with block."""
        self.add_listener(principal_id, fn)
        try:
            yield
        finally:
            self.remove_listener(principal_id, fn)

    def _deliver_local(self, ev: Event) -> None:
        for key in (ev.principal_id, None):
            for q in list(self._subs.get(key, ())):
                try:
                    q.put_nowait(ev)
                except asyncio.QueueFull:
                    # A stalled subscriber loses events, never blocks publishers; it re-syncs
                    # from modseq when it wakes (IMAP, JMAP and SSE all can).
                    pass
            for fn in list(self._listeners.get(key, ())):
                try:
                    fn(ev)
                except Exception:  # noqa: BLE001 - one listener's bug must not fail the publisher
                    log.exception("event listener failed on %s", ev.type)

    async def publish(self, ev: Event) -> None:
        self._deliver_local(ev)
        if self._local is not None:
            self._local.send(ev)
        if self._pg_conn is not None:
            payload = _encode(self._origin, ev, PG_PAYLOAD_MAX)
            try:
                async with self._pg_lock:
                    await self._pg_conn.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)
            except Exception:  # noqa: BLE001 - a lost notification only delays other nodes' IDLE
                log.warning("pg_notify failed", exc_info=True)

    async def publish_many(self, events: list[Event]) -> None:
        """`publish` for a batch (a group commit's): on PostgreSQL one round trip for all of
        the batch's NOTIFYs instead of one each."""
        if self._pg_conn is None or len(events) < 2:
            for ev in events:
                await self.publish(ev)
            return
        for ev in events:
            self._deliver_local(ev)
            if self._local is not None:
                self._local.send(ev)
        payloads = [_encode(self._origin, ev, PG_PAYLOAD_MAX) for ev in events]
        try:
            async with self._pg_lock:
                await self._pg_conn.execute("SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p", CHANNEL,
                                            payloads)
        except Exception:  # noqa: BLE001 - a lost notification only delays other nodes' IDLE
            log.warning("pg_notify failed", exc_info=True)

    def _from_peer(self, payload: str | bytes) -> None:
        try:
            origin, ev = _decode(payload)
        except Exception:  # noqa: BLE001
            log.warning("bad event payload", exc_info=True)
            return
        if origin != self._origin:
            self._deliver_local(ev)

    # ---- PostgreSQL LISTEN/NOTIFY

    async def connect_postgres(self, dsn: str) -> None:
        self._pg_dsn = dsn
        await self._pg_connect()

    async def _pg_connect(self) -> None:
        import asyncpg

        conn = await asyncpg.connect(self._pg_dsn)
        await conn.add_listener(CHANNEL, self._on_notify)
        conn.add_termination_listener(self._on_pg_lost)
        self._pg_conn = conn

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self._from_peer(payload)

    def _on_pg_lost(self, _conn: Any) -> None:
        self._pg_conn = None
        if not self._closed and (self._pg_task is None or self._pg_task.done()):
            log.warning("event bus lost its PostgreSQL LISTEN connection; reconnecting")
            self._pg_task = asyncio.get_running_loop().create_task(self._pg_reconnect(), name="bus-reconnect")

    async def _pg_reconnect(self) -> None:
        delay = 0.1
        while not self._closed:
            try:
                await self._pg_connect()
            except Exception:  # noqa: BLE001 - keep trying while the database is away
                await asyncio.sleep(delay)
                delay = min(delay * 2, PG_RECONNECT_MAX_S)
                continue
            log.warning("event bus LISTEN connection re-established")
            self._deliver_local(Event(type=RESYNC, principal_id=""))
            return

    # ---- SQLite: processes on one host

    def connect_sqlite(self, url: str) -> None:
        """Exchange events with the other processes that use this SQLite database file."""
        from sqlalchemy.engine import make_url

        path = make_url(url).database
        if not path or path == ":memory:" or path.startswith("file:"):
            return  # a private database: no other process can see its changes
        try:
            self._local = _LocalPeers(Path(f"{os.path.realpath(path)}.events"), self._origin, self._from_peer)
        except OSError as exc:
            log.warning("no event exchange between processes on this database (%s): IDLE hears other "
                        "workers' changes only on the client's next command", exc)
            self._local = None

    async def close(self) -> None:
        self._closed = True
        if self._pg_task is not None:
            self._pg_task.cancel()
        if self._pg_conn is not None:
            conn, self._pg_conn = self._pg_conn, None
            with contextlib.suppress(Exception):
                conn.remove_termination_listener(self._on_pg_lost)
            with contextlib.suppress(Exception):
                await conn.close()
        if self._local is not None:
            self._local.close()
            self._local = None


_ABSTRACT = b"\0mailwright-events-"
_UCRED = struct.Struct("iII")  # struct ucred: pid, uid, gid


class _LocalPeers:
    """The datagram channel between processes sharing one SQLite database (see module docstring)."""

    def __init__(self, directory: Path, origin: str, deliver: Callable[[bytes], None]) -> None:
        self.dir = directory
        self.origin = origin
        self.deliver = deliver
        self.backlog: dict[str, deque[bytes]] = {}  # datagrams a full peer has still to get
        self.outbox: list[Event] = []
        self._flush_scheduled = False
        self._retry: asyncio.TimerHandle | None = None
        self._peers: list[str] = []
        self._peers_mtime = -1  # the directory's mtime when _peers was listed
        self.loop = asyncio.get_running_loop()
        directory.mkdir(mode=0o700, exist_ok=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self.sock.setblocking(False)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
            self.sock.bind(_ABSTRACT + origin.encode())
            self.marker = directory / origin
            self.marker.write_text(str(os.getpid()))
        except OSError:
            self.sock.close()
            raise
        self.loop.add_reader(self.sock.fileno(), self._readable)

    def _readable(self) -> None:
        me = os.getuid()
        cmsg_size = socket.CMSG_SPACE(_UCRED.size)
        for _ in range(256):  # bounded: let other callbacks run between bursts
            try:
                data, anc, _flags, _addr = self.sock.recvmsg(LOCAL_PAYLOAD_MAX + 1024, cmsg_size)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                log.warning("event datagram receive failed", exc_info=True)
                return
            uid = -1
            for level, kind, value in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS and len(value) >= _UCRED.size:
                    uid = _UCRED.unpack_from(value)[1]
            if uid != me:
                continue  # not one of our processes
            for payload in data.split(b"\n"):
                self.deliver(payload)

    def peers(self) -> list[str]:
        """The other processes' markers. Listed again only when the directory changed: a
        listing is five system calls, and this runs for every delivery, where a stat is one.
        A listing taken less than PEERS_SETTLE_NS after the directory's last change is not
        trusted (a file system's mtime ticks coarsely, ~4 ms on ext4, so a marker made in the
        same tick would leave it unchanged)."""
        try:
            mtime = os.stat(self.dir).st_mtime_ns
            if mtime != self._peers_mtime or time.time_ns() - mtime < PEERS_SETTLE_NS:
                self._peers = [n for n in os.listdir(self.dir) if n != self.origin]
                self._peers_mtime = mtime
        except OSError:
            return []
        return self._peers

    def send(self, ev: Event) -> None:
        """Queue one event; the events of one loop iteration leave as one datagram per peer,
        encoded then, and only if there is a peer (a lone process encodes nothing).

        A group commit publishes up to 32 events in a row, and Linux queues only
        net.unix.max_dgram_qlen (default 10) datagrams per receiving socket."""
        self.outbox.append(ev)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush_outbox)

    def _flush_outbox(self) -> None:
        self._flush_scheduled = False
        events, self.outbox = self.outbox, []
        peers = self.peers()
        if not peers:
            return
        grams: list[bytes] = []
        cur: list[bytes] = []
        size = 0
        for ev in events:
            payload = _encode(self.origin, ev, LOCAL_PAYLOAD_MAX).encode()
            if cur and size + len(payload) + 1 > LOCAL_PAYLOAD_MAX:
                grams.append(b"\n".join(cur))
                cur, size = [], 0
            cur.append(payload)
            size += len(payload) + 1
        if cur:
            grams.append(b"\n".join(cur))
        for peer in peers:
            q = self.backlog.get(peer)
            for i, gram in enumerate(grams):
                if q:
                    self._queue(peer, q, gram)
                    continue
                try:
                    self.sock.sendto(gram, _ABSTRACT + peer.encode())
                except (BlockingIOError, InterruptedError):
                    q = self.backlog.setdefault(peer, deque())
                    self._queue(peer, q, gram)
                except (ConnectionRefusedError, FileNotFoundError):
                    self._forget(peer)  # that process is gone
                    break
                except OSError:
                    log.warning("event datagram to %s failed; %d events lost", peer, len(grams) - i,
                                exc_info=True)
                    break

    def _queue(self, peer: str, q: deque[bytes], gram: bytes) -> None:
        if len(q) >= LOCAL_BACKLOG_MAX:
            log.warning("event peer %s is not reading; dropping events", peer)
            return
        q.append(gram)
        if self._retry is None:
            self._retry = self.loop.call_later(LOCAL_RETRY_S, self._flush_backlog)

    def _flush_backlog(self) -> None:
        self._retry = None
        for peer, q in list(self.backlog.items()):
            while q:
                try:
                    self.sock.sendto(q[0], _ABSTRACT + peer.encode())
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    self._forget(peer)
                    break
                q.popleft()
            if not q:
                self.backlog.pop(peer, None)
        if self.backlog:
            self._retry = self.loop.call_later(LOCAL_RETRY_S, self._flush_backlog)

    def _forget(self, peer: str) -> None:
        self.backlog.pop(peer, None)
        with contextlib.suppress(OSError):
            (self.dir / peer).unlink()

    def close(self) -> None:
        if self.outbox:
            self._flush_outbox()
        if self._retry is not None:
            self._retry.cancel()
        with contextlib.suppress(Exception):
            self.loop.remove_reader(self.sock.fileno())
        self.sock.close()
        with contextlib.suppress(OSError):
            self.marker.unlink()


__all__ = ["CHANNEL", "RESYNC", "Event", "EventBus"]

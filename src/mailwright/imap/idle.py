"""IDLE (RFC 2177, RFC 9051 §6.3.13): how an idling connection hears of changes, cheaply at scale.

The requirement (issue 5): new mail, flag changes and expunges made by any connection of any
`serve` process reach every IDLE connection of the mailbox within 1 s, with 10,000 IDLE
connections in one process.

What was slow: each IDLE session had its own bus queue and, per wake-up, created a task for
`queue.get()`, an `asyncio.wait` (a waiter future, callbacks, a timer) and an
`asyncio.shield` around the shared database answer. One delivery to an account with 10,000
idling connections made ~20 objects per connection and three task hops each; the allocations
drove the garbage collector over the whole heap of 10,000 sessions again and again, and the
notice took 2-4 s to reach the last connection (profile: two thirds of the time in GC at
allocation sites, and `shield`'s per-waiter callbacks on one shared future).

How it works now:
* One `IdleHub` per event bus (so per process) keeps `mailbox id -> idling sessions` and
  listens to the bus with one synchronous callback (`EventBus.add_listener`): an event for a mailbox
  nobody idles on costs a dict lookup, and no session task is woken to find out.
* For a mailbox with idlers the hub runs one fan-out task: it asks the database once
  (`shared_changes`, per distinct modseq the idlers are at - normally one), then serves each
  parked idler in place: applies the answer to that session's message-number map
  (`ImapSession.apply_changes`) and writes its untagged responses straight to the transport,
  256 idlers between two yields to the loop. No session task is woken, so nothing allocated
  per idler outlives its turn; with a woken task per idler, ten thousand in-flight wake-ups
  were alive at each collection, got promoted, and triggered full collections of the whole
  heap (0.3-0.8 s each at 10,000 connections). An idler that is busy, has DONE or a timer
  pending, is at another modseq, or whose client is not reading (write buffer over 64 KiB) is
  woken instead and syncs and drains itself. Events that arrive while a fan-out runs are
  coalesced into one more round.
* An idling session owns one future per wake-up, one reader task for DONE for the whole IDLE,
  and one timer handle for the keepalive/autologout - nothing per event it does not care about.
* The session is registered with the hub before its initial sync, so a change committed
  between that sync and "+ idling" still wakes it.
* Other processes: the bus forwards every event to every process on the same database
  (PostgreSQL LISTEN/NOTIFY, or datagrams between the workers on one SQLite file; see
  `events.bus`). After the bus lost its LISTEN connection it publishes `bus.resync`, and every
  idler re-reads its mailbox.

Decisions (Dovecot 2.3 does the same): "* OK Still here" every 2 minutes
(`imap_idle_notify_interval`); the autologout timer (RFC 9051 §5.4, at least 30 minutes) keeps
running during IDLE and ends it with "* BYE"; a line other than DONE ends IDLE with BAD; IDLE in
the authenticated state (nothing selected) is allowed and only hears account changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections import Counter
from typing import TYPE_CHECKING

from mailwright.events.bus import RESYNC, Event, EventBus
from mailwright.imap.parser import ParseError, Token
from mailwright.imap.protocol import read_line
from mailwright.mailstore import imapview
from mailwright.services import Services

if TYPE_CHECKING:
    from mailwright.imap.session import ImapSession

log = logging.getLogger(__name__)
KEEPALIVE_S = 120.0
PREFETCH_MAX = 4  # distinct modseqs the hub asks the database for before waking idlers
FANOUT_SLICE = 256  # idlers served in place between two yields to the event loop (~5 ms)
WRITE_BUFFER_MAX = 64 * 1024  # beyond this the client is not reading: its own task must drain

_SHARED: dict[tuple[int, int, int], tuple[object, asyncio.Future[imapview.Changes | None]]] = {}


async def shared_changes(svc: Services, box_id: int, since: int, event: object | None
                         ) -> imapview.Changes | None:
    """changes_since, shared by the sessions woken by the same event.

    When one delivery wakes thousands of IDLE connections on the same mailbox, they all ask the
    same question (same mailbox, same modseq) because of the same event object; the first asks
    the database (after the event was published, so the answer includes its change), the
    others reuse that answer. In IDLE the hub asks first and serves the idlers in place; those
    it has to wake find a finished future (no waiting, no shield allocated)."""
    if event is None:
        return await imapview.changes_since(svc, box_id, since)
    key = (id(svc), box_id, since)
    hit = _SHARED.get(key)
    if hit is not None and hit[0] is event:
        fut = hit[1]
        return fut.result() if fut.done() else await asyncio.shield(fut)
    fut = asyncio.ensure_future(imapview.changes_since(svc, box_id, since))
    _SHARED[key] = (event, fut)
    if len(_SHARED) > 4096:
        for k in [k for k, (_e, f) in _SHARED.items() if f.done()]:
            del _SHARED[k]
    return await asyncio.shield(fut)


class Idler:
    """One idling session, as the hub sees it."""

    __slots__ = ("session", "box_id", "fut", "event", "account_changed", "ticked")

    def __init__(self, session: ImapSession, box_id: int | None) -> None:
        self.session = session
        self.box_id = box_id
        self.fut: asyncio.Future[None] | None = None
        self.event: Event | None = None
        self.account_changed = False
        self.ticked = False

    def tick(self) -> None:
        """The keepalive/autologout timer fired."""
        self.ticked = True
        self.wake()

    def apply(self, answers: dict[int, imapview.Changes | None]) -> bool:
        """Serve this idler in place, from the hub's task, if it is parked in its wait.

        Returns False when its own task must do it: busy (its future is already resolved or
        it is between waits), something else pending (DONE, account check, keepalive), its
        modseq is not among the answers, its mailbox is gone (BYE), or its client is not
        reading (the session then blocks on its own drain, not the hub)."""
        s = self.session
        fut = self.fut
        if fut is None or fut.done() or self.event is not None or self.account_changed or self.ticked \
                or s.closing or s.out:
            return False
        sel = s.sel
        if sel is None or sel.box_id != self.box_id:
            return False
        ch = answers.get(sel.modseq)
        if ch is None:
            return False
        transport = s.writer.transport
        if transport.is_closing() or transport.get_write_buffer_size() > WRITE_BUFFER_MAX:
            return False
        s.apply_changes(ch)
        if s.out:
            data = b"".join(s.out)
            s.out.clear()
            s.writer.write(data)
        return True

    def wake(self, ev: Event | None = None) -> None:
        if ev is not None:
            self.event = ev
        fut = self.fut
        if fut is not None and not fut.done():
            fut.set_result(None)


class IdleHub:
    """The idling sessions of one process, by mailbox (see module docstring)."""

    def __init__(self, bus: EventBus) -> None:
        self.boxes: dict[int, set[Idler]] = {}
        self.accounts: dict[str, set[Idler]] = {}
        self._pending: dict[int, Event] = {}
        self._running: dict[int, asyncio.Task[None]] = {}
        bus.add_listener(None, self.on_event)  # for the bus's lifetime; the hub holds no reference back

    def add(self, idler: Idler) -> None:
        self.accounts.setdefault(idler.session.pid(), set()).add(idler)
        if idler.box_id is not None:
            self.boxes.setdefault(idler.box_id, set()).add(idler)

    def remove(self, idler: Idler) -> None:
        pid = idler.session.pid()
        group = self.accounts.get(pid)
        if group is not None:
            group.discard(idler)
            if not group:
                del self.accounts[pid]
        if idler.box_id is not None:
            box = self.boxes.get(idler.box_id)
            if box is not None:
                box.discard(idler)
                if not box:
                    del self.boxes[idler.box_id]

    def on_event(self, ev: Event) -> None:
        if ev.type == RESYNC:
            for box_id in list(self.boxes):
                self._schedule(box_id, ev)
            return
        if ev.type == "account.changed":
            for idler in list(self.accounts.get(ev.principal_id, ())):
                idler.account_changed = True
                idler.wake()
            return
        if ev.mailbox_id is not None and ev.mailbox_id in self.boxes:
            self._schedule(ev.mailbox_id, ev)

    def _schedule(self, box_id: int, ev: Event) -> None:
        self._pending[box_id] = ev
        if box_id not in self._running:
            self._running[box_id] = asyncio.get_running_loop().create_task(self._fan_out(box_id),
                                                                          name=f"idle-fanout-{box_id}")

    async def _fan_out(self, box_id: int) -> None:
        try:
            while (ev := self._pending.pop(box_id, None)) is not None:
                idlers = self.boxes.get(box_id)
                if not idlers:
                    continue
                svc: Services | None = None
                at: Counter[int] = Counter()
                for idler in idlers:
                    sel = idler.session.sel
                    if sel is not None and sel.box_id == box_id:
                        svc = idler.session.svc
                        at[sel.modseq] += 1
                answers: dict[int, imapview.Changes | None] = {}
                if svc is not None:
                    for since, _n in at.most_common(PREFETCH_MAX):
                        try:
                            answers[since] = await shared_changes(svc, box_id, since, ev)
                        except Exception:  # noqa: BLE001 - each session meets the error on its own sync
                            log.warning("IDLE prefetch of mailbox %s failed", box_id, exc_info=True)
                            break
                for n, idler in enumerate(list(self.boxes.get(box_id, ())), 1):
                    if not idler.apply(answers):
                        idler.wake(ev)
                    if n % FANOUT_SLICE == 0:
                        await asyncio.sleep(0)  # let SMTP, other commands and DONEs in between
        finally:
            self._running.pop(box_id, None)


_HUBS: weakref.WeakKeyDictionary[EventBus, IdleHub] = weakref.WeakKeyDictionary()


def hub_for(bus: EventBus) -> IdleHub:
    hub = _HUBS.get(bus)
    if hub is None:
        hub = _HUBS[bus] = IdleHub(bus)
    return hub


async def cmd_idle(s: ImapSession, tag: str, args: list[Token]) -> str:
    if args:
        raise ParseError("IDLE takes no arguments")
    hub = hub_for(s.svc.events)
    idler = Idler(s, s.sel.box_id if s.sel is not None else None)
    hub.add(idler)  # before the first sync: nothing committed from here on goes unheard
    loop = asyncio.get_running_loop()
    reader_task: asyncio.Task[bytes | None] | None = None
    timer: asyncio.TimerHandle | None = None
    try:
        await s.sync()
        s.w("+ idling\r\n")
        await s.flush()
        deadline = loop.time() + s.timeout
        reader_task = asyncio.ensure_future(read_line(s.reader))
        reader_task.add_done_callback(lambda _t: idler.wake())
        timer = loop.call_at(min(deadline, loop.time() + KEEPALIVE_S), idler.tick)
        while True:
            while idler.event is None and not idler.account_changed and not idler.ticked \
                    and not reader_task.done():
                idler.fut = loop.create_future()
                try:
                    await idler.fut
                finally:
                    idler.fut = None
            if reader_task.done():
                line = reader_task.result()
                await s.sync()
                if line is None or line.rstrip(b"\r\n").upper() != b"DONE":
                    return "BAD Expected DONE."
                return "OK Idle completed."
            if idler.account_changed:
                idler.account_changed = False
                s._recheck_at = 0.0
                if not await s.still_allowed():
                    return "NO Account disabled."
            ev, idler.event = idler.event, None
            if ev is not None:
                await s.sync(event=ev)
                await s.flush()
            if idler.ticked:
                idler.ticked = False
                if loop.time() >= deadline - 0.001:
                    s.w("* BYE Disconnected for inactivity.\r\n")
                    s.closing = True
                    return "NO Idle timed out."
                s.w("* OK Still here\r\n")
                await s.flush()
                timer = loop.call_at(min(deadline, loop.time() + KEEPALIVE_S), idler.tick)
    finally:
        hub.remove(idler)
        if timer is not None:
            timer.cancel()
        if reader_task is not None and not reader_task.done():
            reader_task.cancel()
            with contextlib.suppress(BaseException):
                await reader_task

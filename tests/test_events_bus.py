"""The event bus between processes on one SQLite database: real datagram sockets, no mocks.

Two buses in one test process stand for two worker processes (each has its own origin id and
socket, exactly as after a fork); the `serve --workers 2` end-to-end case is in test_imap_idle.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from mailwright.events.bus import Event, EventBus


def _url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


def test_events_cross_between_buses_on_one_database(tmp_path: Path) -> None:
    async def go() -> None:
        a, b, other = EventBus(), EventBus(), EventBus()
        a.connect_sqlite(_url(tmp_path / "mail.db"))
        b.connect_sqlite(_url(tmp_path / "mail.db"))
        other.connect_sqlite(_url(tmp_path / "other.db"))
        heard: list[Event] = []
        try:
            with b.subscribe("p1") as q, a.subscribe("p1") as own, other.subscribe(None) as stranger, \
                    b.listen(None, heard.append):
                ev = Event(type="message.added", principal_id="p1", mailbox_id=7, modseq=3, uids=(1, 2),
                           data={"message_id": 5})
                await a.publish(ev)
                got = await asyncio.wait_for(q.get(), 2)
                assert got == ev
                assert heard == [ev]
                assert own.get_nowait() == ev  # the publisher's own subscribers, once
                await asyncio.sleep(0.1)
                assert own.empty() and stranger.empty()  # no echo, and nothing for another database
                # a big event keeps its type and mailbox (the UIDs are only a hint)
                big = Event(type="flags.changed", principal_id="p1", mailbox_id=7, uids=tuple(range(20000)))
                await a.publish(big)
                got = await asyncio.wait_for(q.get(), 2)
                assert (got.type, got.mailbox_id, got.uids) == ("flags.changed", 7, ())
        finally:
            for bus in (a, b, other):
                await bus.close()
        assert sorted(p.name for p in (tmp_path / "mail.db.events").iterdir()) == []

    asyncio.run(go())


def test_a_dead_peer_is_forgotten(tmp_path: Path) -> None:
    """A marker whose process is gone (crash: no socket behind it) is removed on the next publish."""
    async def go() -> None:
        a = EventBus()
        a.connect_sqlite(_url(tmp_path / "mail.db"))
        stale = tmp_path / "mail.db.events" / uuid.uuid4().hex
        stale.write_text("12345")
        try:
            await a.publish(Event(type="mailbox.changed", principal_id="p"))
            await asyncio.sleep(0.01)  # events leave at the end of the loop iteration
            assert not stale.exists()
        finally:
            await a.close()

    asyncio.run(go())


def test_a_full_peer_gets_its_events_later(tmp_path: Path) -> None:
    """A peer that stops reading for a while (busy loop) still gets every event, in order."""
    async def go() -> None:
        a, b = EventBus(), EventBus()
        a.connect_sqlite(_url(tmp_path / "mail.db"))
        b.connect_sqlite(_url(tmp_path / "mail.db"))
        assert b._local is not None
        loop = asyncio.get_running_loop()
        loop.remove_reader(b._local.sock.fileno())  # b is "busy": its socket fills up
        n = 20000  # ~9 MB: more than any socket buffer holds
        try:
            with b.subscribe("p", maxsize=n + 10) as q:
                for i in range(n):
                    await a.publish(Event(type="message.added", principal_id="p", mailbox_id=1, modseq=i,
                                          data={"pad": "x" * 300}))
                await asyncio.sleep(0.05)
                assert a._local is not None and a._local.backlog  # some had to wait
                loop.add_reader(b._local.sock.fileno(), b._local._readable)
                got = [(await asyncio.wait_for(q.get(), 5)).modseq for _ in range(n)]
                assert got == list(range(n))
        finally:
            await a.close()
            await b.close()

    asyncio.run(go())


def test_publish_many_crosses_postgres_in_one_notify_batch(database_url: str) -> None:
    """A group commit's events go out as one pg_notify round trip; another node hears each."""
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL LISTEN/NOTIFY")
    dsn = database_url.replace("postgresql+asyncpg://", "postgresql://")

    async def go() -> None:
        a, b = EventBus(), EventBus()
        await a.connect_postgres(dsn)
        await b.connect_postgres(dsn)
        try:
            with b.subscribe("p1") as remote, a.subscribe("p1") as own:
                events = [Event(type="message.added", principal_id="p1", mailbox_id=7, modseq=m, uids=(m,))
                          for m in range(2, 7)]
                await a.publish_many(events)
                got = [await asyncio.wait_for(remote.get(), 5) for _ in events]
                assert got == events  # all of them, in order
                assert [own.get_nowait() for _ in events] == events  # the publisher's own, once
                await asyncio.sleep(0.2)
                assert own.empty() and remote.empty()
        finally:
            await a.close()
            await b.close()

    asyncio.run(go())

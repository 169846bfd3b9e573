"""The blob clean-up race: a message's last reference is deleted (its file unlinked) while a
delivery of byte-identical content found the file present and skipped writing it. The accepted
message must still be readable."""

from __future__ import annotations

import asyncio

import pytest

from mailwright.mailstore import changes, messages
from mailwright.services import Services
from tests.support.server import InProcessServer


def test_identical_delivery_survives_concurrent_blob_cleanup(server: InProcessServer) -> None:
    with server.api() as api:
        assert api.post("/api/principal", json={"name": "race.test", "type": "domain"}).status_code == 200
        for user in ("a", "b"):
            addr = f"{user}@race.test"
            r = api.post("/api/principal", json={"name": addr, "type": "individual",
                                                 "secrets": ["race password 1"], "emails": [addr]})
            assert r.status_code == 200, r.text
    raw = b"Subject: same bytes\r\nMessage-ID: <same@race.test>\r\n\r\nidentical\r\n"

    async def scenario(svc: Services) -> bytes:
        from mailwright.directory.principals import find_principal

        if not svc.db.is_sqlite:
            # On PostgreSQL the two transactions do not queue on one lock, so this exact
            # interleaving cannot be forced from a test; the code path is the same.
            pytest.skip("the interleaving is forced with SQLite's writer lock")

        async with svc.db.read() as s:
            a = await find_principal(s, "a@race.test")
            b = await find_principal(s, "b@race.test")
        assert a is not None and b is not None
        first = await messages.deliver(svc, raw, [messages.Target(a.id)])
        digest = svc.blobs.digest(raw)
        async with svc.db.write() as s:  # holds SQLite's writer lock until the commit
            freed = await changes.delete_messages(s, a.id, [first[0].message_id])
            # A delivery of the same bytes starts: its blob write finds the file and skips it,
            # then it waits for the writer lock ...
            second_task = asyncio.create_task(messages.deliver(svc, raw, [messages.Target(b.id)]))
            await asyncio.sleep(0.3)
            assert not second_task.done()
        # ... while the clean-up unlinks the file right after its commit.
        changes.remove_blob_files(svc, freed)
        assert freed == [digest]
        second = await second_task
        async with svc.db.read() as s:
            from mailwright.storage.models import Message

            msg = await s.get(Message, second[0].message_id)
            assert msg is not None
        return await svc.blobs.get(msg.blob_hash)

    assert server.run(scenario) == raw

"""The blob journal (storage/blobjournal.py): small messages are durable by their commit alone.

A power loss cannot be staged in a test, but its effect on the blob store can: after SIGKILL
the files written without an fsync are deleted or torn (what a lost page cache leaves), and the
restarted server must serve every acknowledged message byte for byte, from the journal.
"""

from __future__ import annotations

import asyncio
import hashlib
import imaplib
import poplib
import secrets
import signal
import smtplib
import sqlite3
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy import insert, select
from sqlalchemy.engine import make_url

from mailwright.mailstore import changes, groupcommit
from mailwright.mailstore.messages import Target
from mailwright.services import Services
from mailwright.storage import blobjournal
from mailwright.storage.blobs import BlobStore
from mailwright.storage.models import Blob, BlobJournal, utcnow
from tests.support.dnsserver import DnsServer, dns_server
from tests.support.server import InProcessServer, ServeProcess, mx_env
from tests.support.smtp import add_domain, add_mailbox, stored_messages

__all__ = ["dns_server"]

PASSWORD = "journal test password"


def _setup(port: int, token: str) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"},
                      timeout=30) as api:
        r = api.post("/api/principal", json={"name": "journal.test", "type": "domain"})
        assert r.status_code == 200, r.text
        r = api.post("/api/principal", json={"name": "box@journal.test", "type": "individual",
                                             "secrets": [PASSWORD], "emails": ["box@journal.test"]})
        assert r.status_code == 200, r.text


def _message(n: int, size: int) -> bytes:
    head = (f"From: <sender@remote.test>\r\nTo: <box@journal.test>\r\nSubject: journal {n}\r\n"
            f"Message-ID: <journal-{n}@remote.test>\r\n\r\n")
    line = f"line of message {n} ".ljust(76, "x") + "\r\n"
    return (head + line * max(1, (size - len(head)) // len(line))).encode()


def _send(port: int, messages: list[bytes]) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        for raw in messages:
            smtp.sendmail("sender@remote.test", ["box@journal.test"], raw)


def _bodies(port: int) -> list[bytes]:
    imap = imaplib.IMAP4("127.0.0.1", port, timeout=30)
    try:
        assert imap.login("box@journal.test", PASSWORD)[0] == "OK"
        typ, data = imap.select("INBOX", readonly=True)
        assert typ == "OK"
        typ, fetched = imap.fetch("1:*", "(BODY.PEEK[])")
        assert typ == "OK", fetched
        return [item[1] for item in fetched if isinstance(item, tuple)]
    finally:
        imap.logout()


def _journal(database_url: str) -> list[tuple[str, int]]:
    """(digest, bytes) of the journal rows, read straight from the database."""
    query = "SELECT digest, length(data) FROM blob_journal ORDER BY id"
    if database_url.startswith("sqlite"):
        with sqlite3.connect(make_url(database_url).database or "") as db:
            return [(str(d), int(n)) for d, n in db.execute(query)]

    async def fetch() -> list[tuple[str, int]]:
        conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            return [(str(r[0]), int(r[1])) for r in await conn.fetch(query)]
        finally:
            await conn.close()

    return asyncio.run(fetch())


def test_lost_unsynced_files_come_back_from_the_journal(
    tmp_path: Path, database_url: str, dns_server: Callable[..., DnsServer]
) -> None:
    token, env = mx_env(dns_server, MAILWRIGHT_BLOB_JOURNAL_FLUSH_SECONDS="3600",
                        MAILWRIGHT_BLOB_JOURNAL_MAX=str(128 * 1024))
    data = tmp_path / "data"
    proc = ServeProcess(data, database_url, extra_env=env).start()
    small = [_message(n, 1024 * (1 + n % 20)) for n in range(12)]
    large = [_message(100 + n, 200 * 1024) for n in range(2)]
    try:
        _setup(proc.ports["http"], token)
        _send(proc.ports["smtp"], small + large)
    finally:
        proc.kill(signal.SIGKILL)

    journal = _journal(database_url)
    # The MX prepends its trace headers, so the stored bytes are not the sent ones: count them.
    assert len(journal) == len(small), "every small message, and only those, is journaled"
    assert all(n <= 128 * 1024 for _, n in journal)
    # A journaled message's file is written by the flusher (held off here): none exists yet.
    # Plant what a power loss can leave of files written but never fsynced (as the flusher
    # does between its writes and its syncfs): empty, or cut short; the rest stay missing.
    for i, (digest, n) in enumerate(journal):
        path = BlobStore(data / "blobs").path(digest)
        assert not path.exists()
        if i % 3:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"x" * (0 if i % 3 == 1 else n // 2))

    proc.start()
    try:
        assert _journal(database_url) == [], "the restart restored and dropped every row"
        got = _bodies(proc.ports["imap"])
        assert len(got) == len(small + large)
        for raw in small + large:  # each stored message ends with exactly the bytes sent
            assert sum(1 for body in got if body.endswith(raw)) == 1
    finally:
        proc.kill(signal.SIGTERM)


def test_the_flusher_syncs_and_empties_the_journal(server: InProcessServer) -> None:
    add_domain(server, "journal.test")
    pid = add_mailbox(server, "box@journal.test")
    raw = _message(1, 4096)

    async def deliver(svc: Services) -> list[str]:
        await groupcommit.deliver(svc, raw, [Target(principal_id=pid)])
        return await _rows(svc)

    digest = hashlib.sha256(raw).hexdigest()
    assert server.run(deliver) == [digest]  # journaled with the commit
    assert server.svc is not None
    path = server.svc.blobs.path(digest)
    deadline = time.monotonic() + 15
    while server.run(_rows) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.run(_rows) == [], "written, synced and dropped within a few flush intervals"
    assert path.read_bytes() == raw
    assert len(stored_messages(server, "box@journal.test")) == 1


def test_a_message_is_served_from_its_row_until_its_file_exists(
    tmp_path: Path, database_url: str, dns_server: Callable[..., DnsServer]
) -> None:
    """Between its commit and the next flush a small message has no file: IMAP (its inline
    read) and POP3 (BlobStore.get) must serve it from the journal row, byte for byte, and the
    same bytes from the file once it is written."""
    token, env = mx_env(dns_server, MAILWRIGHT_BLOB_JOURNAL_FLUSH_SECONDS="3600")
    data = tmp_path / "data"
    proc = ServeProcess(data, database_url, extra_env=env).start()
    raw = _message(7, 3000)
    try:
        _setup(proc.ports["http"], token)
        _send(proc.ports["smtp"], [raw])
        [(digest, _)] = _journal(database_url)
        path = BlobStore(data / "blobs").path(digest)
        assert not path.exists(), "no file before the flush"
        [imap_body] = _bodies(proc.ports["imap"])
        assert imap_body.endswith(raw)
        pop = poplib.POP3("127.0.0.1", proc.ports["pop3"], timeout=30)
        try:
            pop.user("box@journal.test")
            pop.pass_(PASSWORD)
            pop_body = b"\r\n".join(pop.retr(1)[1]) + b"\r\n"
        finally:
            pop.quit()
        assert pop_body == imap_body
        proc.kill(signal.SIGTERM)  # a clean stop flushes: the file is written, the row dropped
        assert path.read_bytes() == imap_body
        assert _journal(database_url) == []
        proc.start()
        assert _bodies(proc.ports["imap"]) == [imap_body]
    finally:
        proc.kill(signal.SIGTERM)


def test_a_message_deleted_before_the_flush_leaves_no_file(server: InProcessServer) -> None:
    add_domain(server, "journal.test")
    pid = add_mailbox(server, "box@journal.test")
    raw = _message(2, 2048)
    digest = hashlib.sha256(raw).hexdigest()

    async def deliver_then_delete(svc: Services) -> int:
        [stored] = await groupcommit.deliver(svc, raw, [Target(principal_id=pid)])
        await changes.store_flags(svc, pid, stored.mailbox_id, [stored.uid], "add", ["\\Deleted"])
        await changes.expunge(svc, pid, stored.mailbox_id, [stored.uid])
        return await blobjournal.flush(svc)

    assert server.run(deliver_then_delete) == 1, "the row is dropped"
    assert server.svc is not None
    assert not server.svc.blobs.path(digest).exists(), "and no file written for a blob nobody uses"
    assert server.run(_rows) == []


async def _rows(svc: Services) -> list[str]:
    async with svc.db.read() as s:
        return list((await s.execute(select(BlobJournal.digest).order_by(BlobJournal.id))).scalars())


@pytest.mark.parametrize("live", [True, False])
def test_orphaned_rows_of_a_dead_node_are_restored(server: InProcessServer, live: bool) -> None:
    """Rows another node left behind (it died before syncing) are written back by any node,
    unless their blob was deleted meanwhile."""
    raw = b"Subject: orphan\r\n\r\n" + secrets.token_bytes(64).hex().encode() + b"\r\n"
    digest = hashlib.sha256(raw).hexdigest()
    old = utcnow() - blobjournal.STALE_AFTER - timedelta(seconds=5)

    async def plant(svc: Services) -> None:
        async with svc.db.write() as s:
            if live:
                await s.execute(insert(Blob).values(hash=digest, size=len(raw), created_at=old))
            await s.execute(insert(BlobJournal).values(owner="deadhost:/srv/blobs", digest=digest, data=raw,
                                                       created_at=old))
            await s.execute(insert(BlobJournal).values(owner="deadhost:/srv/blobs", digest="0" * 64,
                                                       data=b"young", created_at=utcnow()))

    server.run(plant)
    assert server.run(lambda svc: blobjournal.recover(svc, stale_only=True)) == (1 if live else 0)
    assert server.svc is not None
    path = server.svc.blobs.path(digest)
    assert (path.read_bytes() == raw) if live else not path.exists()
    assert server.run(_rows) == ["0" * 64], "a young row of another owner is left to its owner"

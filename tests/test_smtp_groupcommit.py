"""Group commit: concurrent deliveries share transactions, each still durable before its 250.

The crash test is the issue's acceptance: SIGKILL in the middle of a load of 1,000 messages
over 16 connections; after a restart every message that got a 250 is in its mailbox exactly
once (messages in flight at the kill may or may not be there, never twice).
"""

from __future__ import annotations

import asyncio
import os
import signal
import smtplib
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from mailwright.mailstore import groupcommit
from mailwright.mailstore.messages import Target
from mailwright.services import Services
from tests.support.server import InProcessServer, ServeProcess
from tests.support.smtp import add_domain, add_mailbox, stored_messages


def test_concurrent_deliveries_share_commits_and_failures_stay_alone(server: InProcessServer) -> None:
    add_domain(server, "gc.test")
    pids = [add_mailbox(server, f"u{i}@gc.test") for i in range(4)]

    async def burst(svc: Services) -> tuple[list[Any], int, int]:
        gc = groupcommit.committer_for(svc)
        b0, j0 = gc.batches, gc.jobs
        jobs = []
        for i in range(40):
            raw = f"Subject: n{i}\r\nMessage-ID: <n{i}@gc.test>\r\n\r\nbody {i}\r\n".encode()
            jobs.append(groupcommit.deliver(svc, raw, [Target(principal_id=pids[i % 4])]))
        bad = groupcommit.deliver(svc, b"Subject: bad\r\n\r\nx\r\n", [Target(principal_id="no-such-principal")])
        results = await asyncio.gather(*jobs[:20], bad, *jobs[20:], return_exceptions=True)
        return results, gc.batches - b0, gc.jobs - j0

    results, batches, jobs = server.run(burst)
    good = results[:20] + results[21:]
    assert all(isinstance(r, list) and len(r) == 1 for r in good), results
    assert isinstance(results[20], Exception) or results[20] == []  # the bad one failed alone
    assert jobs == 41 and batches < jobs  # deliveries were batched
    for i in range(4):
        msgs = stored_messages(server, f"u{i}@gc.test")
        assert len(msgs) == 10
    # UIDs within each mailbox are dense and unique.
    assert sum(len(stored_messages(server, f"u{i}@gc.test")) for i in range(4)) == 40


def test_sigkill_during_load_keeps_every_acknowledged_message_once(tmp_path: Path, database_url: str) -> None:
    token = "test-admin-token-" + os.urandom(8).hex()
    proc = ServeProcess(tmp_path / "data", database_url, extra_env={"MAILWRIGHT_ADMIN_TOKEN": token}).start()
    base = f"http://127.0.0.1:{proc.ports['http']}"
    h = {"Authorization": f"Bearer {token}"}
    r = httpx.post(f"{base}/api/principal", headers=h, json={"name": "crash.test", "type": "domain"})
    assert r.status_code == 200, r.text
    users = [f"u{i}@crash.test" for i in range(5)]
    for u in users:
        r = httpx.post(f"{base}/api/principal", headers=h,
                       json={"name": u, "type": "individual", "secrets": ["a safe password"], "emails": [u]})
        assert r.status_code == 200, r.text
    acked: list[tuple[str, str]] = []  # (recipient, message-id) that got 250
    lock = threading.Lock()
    counter = iter(range(1000))
    stop = threading.Event()

    def client() -> None:
        try:
            with smtplib.SMTP("127.0.0.1", proc.ports["smtp"], timeout=30) as smtp:
                smtp.ehlo("client.test")
                while not stop.is_set():
                    with lock:
                        i = next(counter, None)
                    if i is None:
                        return
                    rcpt = users[i % len(users)]
                    mid = f"<load{i}@remote.test>"
                    msg = f"Subject: load {i}\r\nMessage-ID: {mid}\r\n\r\nbody {i}\r\n".encode()
                    smtp.sendmail("x@remote.test", [rcpt], msg)
                    with lock:
                        acked.append((rcpt, mid))
        except (smtplib.SMTPException, OSError):
            return  # the server died under us

    threads = [threading.Thread(target=client) for _ in range(16)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 120
    while len(acked) < 300 and time.monotonic() < deadline and any(t.is_alive() for t in threads):
        time.sleep(0.01)
    proc.kill(signal.SIGKILL)
    stop.set()
    for t in threads:
        t.join(30)
    with lock:
        acknowledged = list(acked)
    assert len(acknowledged) >= 100

    again = ServeProcess(tmp_path / "data", database_url, extra_env={"MAILWRIGHT_ADMIN_TOKEN": token})
    again.ports = proc.ports
    again.start()
    try:
        import imaplib

        stored: dict[str, list[str]] = {}
        for u in users:
            imap = imaplib.IMAP4("127.0.0.1", again.ports["imap"], timeout=30)
            try:
                imap.login(u, "a safe password")
                typ, data = imap.select("INBOX")
                n = int(data[0] or 0)
                ids: list[str] = []
                if n:
                    typ, fetched = imap.fetch(f"1:{n}", "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
                    for item in fetched:
                        if isinstance(item, tuple):
                            ids.append(item[1].decode().split(":", 1)[1].strip())
                stored[u] = ids
            finally:
                imap.logout()
        for u, ids in stored.items():
            assert len(ids) == len(set(ids)), f"duplicates in {u}"
        for rcpt, mid in acknowledged:
            assert mid in stored[rcpt], f"{mid} got 250 but is not in {rcpt}"
    finally:
        again.kill(signal.SIGTERM)

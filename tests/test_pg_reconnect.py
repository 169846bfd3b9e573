"""Connections dropped by PostgreSQL (a restart, an admin's pg_terminate_backend): the pool has
no pre-ping (storage/db.py), so a request may fail once with a temporary error, then works."""

from __future__ import annotations

import asyncio
import smtplib

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from tests.support.server import InProcessServer
from tests.support.smtp import add_domain, add_mailbox, stored_messages


def _terminate_backends(database_url: str) -> int:
    url = make_url(database_url)

    async def go() -> int:
        conn = await asyncpg.connect(host=url.host, port=url.port or 5432, user=url.username, database="postgres")
        try:
            rows = await conn.fetch("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                    "WHERE datname = $1 AND pid <> pg_backend_pid()", url.database)
            return len(rows)
        finally:
            await conn.close()

    return asyncio.run(go())


def _send(server: InProcessServer, n: int) -> tuple[int, str]:
    try:
        with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=30) as c:
            c.sendmail("bob@remote.test", ["alice@pg.test"],
                       f"From: bob@remote.test\r\nSubject: m{n}\r\n\r\nbody {n}\r\n".encode())
        return 250, ""
    except smtplib.SMTPRecipientsRefused as exc:
        code, text = exc.recipients["alice@pg.test"]
        return code, text.decode()
    except smtplib.SMTPResponseException as exc:
        return exc.smtp_code, exc.smtp_error.decode()


def test_dropped_connections_cost_at_most_a_retry(server: InProcessServer, database_url: str) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL connection pool behaviour")
    add_domain(server, "pg.test")
    add_mailbox(server, "alice@pg.test")
    assert _send(server, 1)[0] == 250
    assert _terminate_backends(database_url) > 0  # the server's pooled connections are gone
    results = [_send(server, n) for n in range(2, 6)]
    codes = [c for c, _ in results]
    assert all(c in (250, 451) for c in codes), results  # temporary at worst, never 5xx
    assert codes[-2:] == [250, 250], results  # the pool has recovered
    subjects = sorted(m.split(b"Subject: ")[1].split(b"\r\n")[0] for m in stored_messages(server, "alice@pg.test"))
    accepted = ["m1"] + [f"m{n}" for n, (c, _) in zip(range(2, 6), results, strict=True) if c == 250]
    assert subjects == sorted(s.encode() for s in accepted)
    with server.api() as api:  # the API too: at most one 503, then answers
        statuses = [api.get("/api/principal", params={"types": "individual"}).status_code for _ in range(3)]
    assert all(s in (200, 503) for s in statuses) and statuses[-1] == 200, statuses

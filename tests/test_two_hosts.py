"""Two Mailwright hosts on loopback and a real DNS server (NSD) between them (issue 4, item 6).

Host A serves a.test, host B serves b.test; NSD serves MX, A, SPF, DKIM and DMARC (p=reject)
for both, with the records the management API says each domain needs. Each host resolves
through NSD and reaches the other's MX port through a transport-map entry that still looks the
MX up (only the port differs from 25). Mail is submitted with swaks (AUTH PLAIN over STARTTLS)
and read back over IMAP.
"""

from __future__ import annotations

import email
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email import policy
from pathlib import Path
from typing import Any

import pytest

from mailwright.delivery import queue
from mailwright.runtime.sockets import bind
from mailwright.services import Services
from tests.support.dnsserver import DnsServer, dns_server
from tests.support.server import InProcessServer
from tests.support.smtp import PASSWORD, add_domain, add_list, add_mailbox, imap_messages

__all__ = ["dns_server"]

FAST = {"queue_retry_base_seconds": 0.5, "queue_retry_max_seconds": 1.0, "queue_poll_seconds": 0.2,
        "outbound_timeout_seconds": 10.0}
DMARC = "v=DMARC1; p=reject"


def swaks_path() -> str:
    path = shutil.which("swaks")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("swaks is not installed (scripts/debian-packages.txt)")
        pytest.skip("swaks is not installed (Debian package swaks)")
    return path


@dataclass
class Hosts:
    a: InProcessServer
    b: InProcessServer
    dns: DnsServer
    tmp: Path
    database_urls: tuple[str, str]


def _server(data_dir: Path, url: str, host: str, dns: DnsServer) -> InProcessServer:
    srv = InProcessServer(data_dir, url, dns_nameservers=["127.0.0.1"], dns_port=dns.port, **FAST)
    srv.settings.hostname = host
    return srv


def _publish(srv: InProcessServer, dns: DnsServer, domain: str) -> None:
    """Serve the records GET /api/dns/{domain} asks for (+ the MX host's A, DMARC p=reject)."""
    from mailwright.directory import dkim, domains

    async def keys(svc: Services) -> None:
        async with svc.db.read() as s:
            d = await domains.get_domain(s, domain)
            have = await dkim.list_for_domain(s, d.id)
        if not have:
            await dkim.create(svc.db, d, "ed25519-sha256", "ed1")
            await dkim.create(svc.db, d, "rsa-sha256", "rsa1")

    srv.run(keys)
    with srv.api() as api:
        r = api.get(f"/api/dns/{domain}")
        assert r.status_code == 200, r.text
        wanted = r.json()["data"]
    records: list[tuple[str, str, str]] = [(srv.settings.hostname + ".", "A", "127.0.0.1")]
    for rec in wanted:
        name = rec["name"]
        if rec["type"] == "MX":
            records.append((name, "MX", f"{rec['priority']} {rec['content']}"))
        elif rec["type"] == "TXT" and not name.startswith(("_dmarc.", "_mta-sts.", "_smtp._tls.")):
            records.append((name, "TXT", rec["content"]))
    assert any(t == "TXT" and "_domainkey" in n for n, t, _ in records), wanted
    assert any(t == "TXT" and v.startswith("v=spf1") for _, t, v in records), wanted
    records.append((f"_dmarc.{domain}.", "TXT", DMARC))
    dns.set_records(domain, records)


@pytest.fixture
def hosts(tmp_path: Path, database_url: str, dns_server: Callable[..., DnsServer]) -> Iterator[Hosts]:
    dns = dns_server({"a.test": [], "b.test": []})
    url_b = _second_database(database_url, tmp_path)
    a = _server(tmp_path / "a", database_url, "mx.a.test", dns)
    b = _server(tmp_path / "b", url_b, "mx.b.test", dns)
    a.settings.transport_map["b.test"] = f"b.test:{b.ports['smtp']}"
    b.settings.transport_map["a.test"] = f"a.test:{a.ports['smtp']}"
    h = Hosts(a, b, dns, tmp_path, (database_url, url_b))
    try:
        a.start()
        b.start()
        add_domain(a, "a.test")
        add_mailbox(a, "alice@a.test")
        add_domain(b, "b.test")
        add_mailbox(b, "bob@b.test")
        _publish(a, dns, "a.test")
        _publish(b, dns, "b.test")
        yield h
    finally:
        for srv in (h.a, h.b):
            if srv.loop.is_running():  # a test may have stopped (and replaced) one
                srv.stop()


def _second_database(url: str, tmp_path: Path) -> str:
    """Host B's own database: a second SQLite file, or a second fresh PostgreSQL database."""
    if url.startswith("sqlite"):
        return f"sqlite+aiosqlite:///{tmp_path / 'b.db'}"
    from tests.support import pg

    url_b, name = pg.fresh_database()
    _PG_CLEANUP.append(name)
    return url_b


_PG_CLEANUP: list[str] = []


@pytest.fixture(autouse=True)
def _drop_second_pg() -> Iterator[None]:
    yield
    from tests.support import pg

    while _PG_CLEANUP:
        pg.drop(_PG_CLEANUP.pop())


def swaks(srv: InProcessServer, sender: str, to: str, subject: str, body: str = "hello from A") -> str:
    out = subprocess.run(
        [swaks_path(), "--server", f"127.0.0.1:{srv.ports['submission']}", "--tls", "--auth", "PLAIN",
         "--auth-user", sender, "--auth-password", PASSWORD, "--from", sender, "--to", to,
         "--h-From", sender, "--header", f"Subject: {subject}", "--body", body, "--timeout", "20"],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def wait(pred: Callable[[], Any], timeout: float = 30, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def inbox(srv: InProcessServer, addr: str, subject: str) -> list[email.message.Message]:
    msgs = [email.message_from_bytes(raw, policy=policy.compat32) for raw in imap_messages(srv, addr)]
    return [m for m in msgs if subject in str(m.get("Subject", ""))]


def auth_results(msg: email.message.Message, authserv: str) -> str:
    for value in msg.get_all("Authentication-Results") or []:
        text = " ".join(str(value).split())
        if text.startswith(authserv):
            return text
    raise AssertionError(f"no Authentication-Results from {authserv}: {msg.get_all('Authentication-Results')}")


def queue_entries(srv: InProcessServer) -> list[queue.QueueEntry]:
    async def go(svc: Services) -> list[queue.QueueEntry]:
        async with svc.db.read() as s:
            return (await queue.list_messages(s))[0]

    return srv.run(go)


def test_submitted_on_a_arrives_on_b_authenticated(hosts: Hosts) -> None:
    swaks(hosts.a, "alice@a.test", "bob@b.test", "a to b")
    (msg,) = wait(lambda: inbox(hosts.b, "bob@b.test", "a to b"), what="the message on B")
    ar = auth_results(msg, "mx.b.test")
    assert "dkim=pass" in ar and "header.d=a.test" in ar, ar
    assert "spf=pass smtp.mailfrom=a.test" in ar, ar
    assert "dmarc=pass" in ar and "header.from=a.test" in ar, ar
    sigs = msg.get_all("DKIM-Signature") or []
    assert len(sigs) == 2  # ed25519-sha256 and rsa-sha256
    assert "hello from A" in msg.get_payload()
    wait(lambda: not queue_entries(hosts.a), what="A's queue to empty")


def test_forwarder_on_b_to_a_with_srs_and_dkim(hosts: Hosts) -> None:
    add_list(hosts.b, "fwd@b.test", ["alice@a.test"])
    swaks(hosts.a, "alice@a.test", "fwd@b.test", "round trip")
    (msg,) = wait(lambda: inbox(hosts.a, "alice@a.test", "round trip"), what="the forwarded message on A")
    ar = auth_results(msg, "mx.a.test")
    # B forwarded with an SRS envelope sender at b.test: SPF passes for b.test, the original
    # DKIM signature of a.test is intact, so DMARC (aligned through DKIM) passes.
    assert "spf=pass smtp.mailfrom=b.test" in ar, ar
    assert "dkim=pass" in ar and "header.d=a.test" in ar, ar
    assert "dmarc=pass" in ar, ar
    # B's own verdict on the way in is there too, below A's.
    assert "dkim=pass" in auth_results(msg, "mx.b.test")


def test_rejection_on_b_bounces_to_the_sender_on_a(hosts: Hosts) -> None:
    swaks(hosts.a, "alice@a.test", "nobody@b.test", "to nobody")
    (bounce,) = wait(lambda: inbox(hosts.a, "alice@a.test", "Undelivered Mail"), what="a DSN on A")
    assert bounce.get_content_type() == "multipart/report"
    assert bounce.get_param("report-type") == "delivery-status"
    text = bounce.as_string()
    assert "Final-Recipient: rfc822; nobody@b.test" in text
    assert "Status: 5.1.1" in text and "Action: failed" in text
    assert "Remote-MTA: dns; mx.b.test" in text
    assert "Subject: to nobody" in text
    wait(lambda: not queue_entries(hosts.a), what="A's queue to empty")


def test_b_down_then_back(hosts: Hosts) -> None:
    b_port = hosts.b.ports["smtp"]
    b_dir, b_url = hosts.b.settings.data_dir, hosts.database_urls[1]
    hosts.b.stop()
    swaks(hosts.a, "alice@a.test", "bob@b.test", "while B was down")
    entry = wait(lambda: [e for e in queue_entries(hosts.a) if e.recipients[0].attempts >= 2],
                 what="two failed attempts")[0]
    assert entry.recipients[0].status == "pending"
    assert "connect failed" in (entry.recipients[0].last_error or "")
    # B comes back on the same address and port, with its data.
    b2 = _server(b_dir, b_url, "mx.b.test", hosts.dns)
    b2.socks["smtp"].close()
    b2.socks["smtp"] = bind("127.0.0.1", b_port)
    b2.ports["smtp"] = b_port
    b2.settings.smtp_port = b_port
    hosts.b = b2
    b2.start()
    (msg,) = wait(lambda: inbox(b2, "bob@b.test", "while B was down"), what="delivery after B's return")
    assert "dkim=pass" in auth_results(msg, "mx.b.test")
    wait(lambda: not queue_entries(hosts.a), what="A's queue to empty")


def test_bounce_of_a_forward_returns_through_srs(hosts: Hosts) -> None:
    """B forwards to an address A does not have; B's bounce goes to the SRS-reversed original
    sender on A. The DSN (From: MAILER-DAEMON@mx.b.test, envelope <>) is DKIM-signed by b.test,
    so it passes A's DMARC check (b.test says p=reject) through relaxed alignment."""
    add_list(hosts.b, "fwd2@b.test", ["ghost@a.test"])
    swaks(hosts.a, "alice@a.test", "fwd2@b.test", "to a ghost")
    (bounce,) = wait(lambda: inbox(hosts.a, "alice@a.test", "Undelivered Mail"), what="the DSN back on A")
    text = bounce.as_string()
    assert "Final-Recipient: rfc822; ghost@a.test" in text and "Status: 5.1.1" in text
    assert "Reporting-MTA: dns; mx.b.test" in text and "Remote-MTA: dns; mx.a.test" in text
    assert "Subject: to a ghost" in text
    ar = auth_results(bounce, "mx.a.test")
    assert "dkim=pass header.d=b.test" in ar and "dmarc=pass" in ar, ar
    wait(lambda: not queue_entries(hosts.b), what="B's queue to empty")

"""Submission rules (delivery.submit), send limits across processes, SRS, DSN and MX routing."""

from __future__ import annotations

import asyncio
import email
import imaplib
import re
import smtplib
import ssl
from collections.abc import Callable
from email import policy
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from mailwright.config import Settings
from mailwright.delivery import dsn, srs
from mailwright.delivery.limits import SendLimitExceeded, usage
from mailwright.delivery.mx import DestinationError, destinations
from mailwright.delivery.submit import SenderNotAllowed, SubmitResult, submit
from mailwright.directory.logins import login
from mailwright.services import Services
from mailwright.storage.models import Principal, Tenant
from tests.support.dnsserver import DnsServer, dns_server
from tests.support.server import InProcessServer, free_port
from tests.support.smtp import PASSWORD, add_domain, add_list, add_mailbox, imap_messages, queued

__all__ = ["dns_server"]


@pytest.fixture
def mw(server: InProcessServer) -> InProcessServer:
    add_domain(server, "a.test")
    add_mailbox(server, "alice@a.test", aliases=["al@a.test"])
    add_mailbox(server, "bob@a.test")
    assert server.svc is not None  # remote mail goes nowhere (a closed port): it stays queued
    server.svc.settings.transport_map["*"] = f"[127.0.0.1]:{free_port()}"
    return server


def msg(frm: str = "alice@a.test", extra: str = "", subject: str = "s") -> bytes:
    return f"From: {frm}\r\nTo: bob@a.test\r\nSubject: {subject}\r\n{extra}\r\nbody\r\n".encode()


def do_submit(srv: InProcessServer, user: str, mail_from: str, rcpts: list[str], raw: bytes,
              **kw: object) -> SubmitResult:
    async def go(svc: Services) -> SubmitResult:
        acc = await login(svc.db, user, PASSWORD)
        assert acc is not None
        return await submit(svc, acc, mail_from, rcpts, raw, **kw)  # type: ignore[arg-type]

    return srv.run(go)


def parsed(raw: bytes) -> email.message.Message:
    return email.message_from_bytes(raw, policy=policy.compat32)


def test_headers_added_and_local_delivery(mw: InProcessServer) -> None:
    res = do_submit(mw, "alice@a.test", "alice@a.test", ["bob@a.test", "nobody@a.test", "x@far.test"],
                    msg(), client_ip="192.0.2.7")
    assert res.local == ["bob@a.test"] and res.queued == ["x@far.test"] and res.queue_id is not None
    assert res.rejected == {"nobody@a.test": "unknown"}
    (got,) = imap_messages(mw, "bob@a.test")
    m = parsed(got)
    assert m["Message-ID"] == res.message_id and res.message_id.endswith("@mx.test.local>")
    assert m["Date"] and "[192.0.2.7]" in m["Received"] and "with ESMTPSA" in m["Received"]
    assert got.startswith(b"Received: ")
    # Kept as given when present.
    res2 = do_submit(mw, "alice@a.test", "alice@a.test", ["bob@a.test"],
                     msg(extra="Message-ID: <given@a.test>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n"))
    assert res2.message_id == "<given@a.test>"
    m2 = parsed(imap_messages(mw, "bob@a.test")[1])
    assert m2.get_all("Message-ID") == ["<given@a.test>"] and len(m2.get_all("Date") or []) == 1
    # A missing From: is completed from the envelope sender.
    do_submit(mw, "alice@a.test", "al@a.test", ["bob@a.test"], b"Subject: no from\r\n\r\nx\r\n")
    assert parsed(imap_messages(mw, "bob@a.test")[2])["From"] == "<al@a.test>"
    assert [e.recipients[0].rcpt for e in queued(mw)] == ["x@far.test"]
    # Bcc never reaches the recipients (folded lines included).
    do_submit(mw, "alice@a.test", "alice@a.test", ["bob@a.test", "al@a.test"],
              msg(extra="Bcc: al@a.test,\r\n secret@a.test\r\nX-Keep: yes\r\n", subject="bcc"))
    last = imap_messages(mw, "bob@a.test")[3]
    assert b"Bcc" not in last and b"secret@a.test" not in last and b"X-Keep: yes" in last


def test_sender_rules(mw: InProcessServer) -> None:
    with pytest.raises(SenderNotAllowed):
        do_submit(mw, "alice@a.test", "bob@a.test", ["bob@a.test"], msg("alice@a.test"))
    with pytest.raises(SenderNotAllowed):
        do_submit(mw, "alice@a.test", "alice@a.test", ["bob@a.test"], msg("Bob <bob@a.test>"))
    with pytest.raises(SenderNotAllowed):
        do_submit(mw, "alice@a.test", "alice@a.test", ["bob@a.test"], msg("alice@a.test, bob@a.test"))
    with pytest.raises(SenderNotAllowed):
        do_submit(mw, "alice@a.test", "", ["bob@a.test"], msg())
    # Aliases and case do not matter; a list the account belongs to may be used.
    do_submit(mw, "alice@a.test", "AL@A.TEST", ["bob@a.test"], msg("Alice <Alice@A.test>"))
    add_list(mw, "team@a.test", ["alice@a.test"])
    do_submit(mw, "alice@a.test", "team@a.test", ["bob@a.test"], msg("Team <team@a.test>"))
    with pytest.raises(SenderNotAllowed):
        do_submit(mw, "bob@a.test", "team@a.test", ["alice@a.test"], msg("team@a.test"))


def test_sent_copy_only_on_request(mw: InProcessServer) -> None:
    do_submit(mw, "alice@a.test", "alice@a.test", ["bob@a.test"], msg(subject="no copy"))
    do_submit(mw, "alice@a.test", "alice@a.test", ["bob@a.test"], msg(subject="copy"), save_sent=True)
    imap = imaplib.IMAP4("127.0.0.1", mw.ports["imap"], timeout=30)
    try:
        imap.login("alice@a.test", PASSWORD)
        typ, data = imap.select("Sent")
        assert typ == "OK" and int(data[0] or 0) == 1
        typ, fetched = imap.fetch("1", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        item = fetched[0]
        assert isinstance(item, tuple)
        assert b"\\Seen" in item[0] and b"Subject: copy" in item[1]
    finally:
        imap.logout()


def test_external_members_of_a_local_list_are_queued(mw: InProcessServer) -> None:
    add_list(mw, "crew@a.test", ["bob@a.test", "ext@far.test"])
    res = do_submit(mw, "alice@a.test", "alice@a.test", ["crew@a.test"], msg())
    assert res.local == ["crew@a.test"] and res.queue_id is not None
    assert len(imap_messages(mw, "bob@a.test")) == 1
    (entry,) = queued(mw)
    assert [r.rcpt for r in entry.recipients] == ["ext@far.test"] and entry.mail_from == "alice@a.test"


def _set_limits(srv: InProcessServer, *, principal: dict[str, int | None] | None = None,
                tenant: dict[str, int | None] | None = None) -> None:
    async def go(svc: Services) -> None:
        async with svc.db.write() as s:
            p = (await s.execute(Principal.__table__.select().where(Principal.name == "alice@a.test"))).first()
            assert p is not None
            if principal is not None:
                await s.execute(update(Principal).where(Principal.id == p.id).values(**principal))
            if tenant is not None:
                await s.execute(update(Tenant).where(Tenant.id == p.tenant_id).values(**tenant))

    srv.run(go)


def smtp_submit(srv: InProcessServer, user: str, rcpts: list[str], subject: str) -> tuple[int, str]:
    """Through the submission port (STARTTLS + AUTH); the reply to the message."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP("127.0.0.1", srv.ports["submission"], timeout=30) as smtp:
        smtp.starttls(context=ctx)
        smtp.login(user, PASSWORD)
        try:
            smtp.sendmail(user, rcpts, msg(user, subject=subject))
        except smtplib.SMTPDataError as exc:
            err = exc.smtp_error
            return exc.smtp_code, err.decode() if isinstance(err, bytes) else err
        return 250, "OK"


def test_send_limits_hold_across_two_processes(mw: InProcessServer) -> None:
    """Two nodes on one database share the counters (per message, not per recipient); SMTP
    answers 451 4.7.0 with the wait."""
    _set_limits(mw, principal={"send_per_hour": 3})
    other = InProcessServer(mw.settings.data_dir, mw.settings.database_url).start()  # shared blobs too
    try:
        for i, node in enumerate([mw, other, mw]):
            assert smtp_submit(node, "alice@a.test", ["bob@a.test", "al@a.test"], f"n{i}")[0] == 250
        for node in (other, mw):
            code, text = smtp_submit(node, "alice@a.test", ["bob@a.test"], "over")
            assert code == 451 and text.startswith("4.7.0"), text
            wait_s = int(re.search(r"(\d+) seconds", text).group(1))  # type: ignore[union-attr]
            assert 0 < wait_s <= 3600
            with pytest.raises(SendLimitExceeded) as exc:
                do_submit(node, "alice@a.test", "alice@a.test", ["bob@a.test"], msg())
            assert 0 < exc.value.retry_after <= 3600
        assert len(imap_messages(mw, "bob@a.test")) == 3
    finally:
        other.stop()


def test_limit_lookup_order_and_daily_window(mw: InProcessServer) -> None:
    _set_limits(mw, tenant={"send_per_hour": 1})
    do_submit(mw, "alice@a.test", "alice@a.test", ["bob@a.test"], msg())
    with pytest.raises(SendLimitExceeded):
        do_submit(mw, "alice@a.test", "alice@a.test", ["bob@a.test"], msg())
    # The account's own setting beats its tenant's; a daily limit refuses without counting the hour.
    _set_limits(mw, principal={"send_per_hour": 10, "send_per_day": 2})
    do_submit(mw, "alice@a.test", "alice@a.test", ["bob@a.test"], msg())
    with pytest.raises(SendLimitExceeded) as exc:
        do_submit(mw, "alice@a.test", "alice@a.test", ["bob@a.test"], msg())
    assert 0 < exc.value.retry_after <= 86400

    async def counted(svc: Services) -> dict[str, int]:
        async with svc.db.read() as s:
            p = (await s.execute(Principal.__table__.select().where(Principal.name == "alice@a.test"))).first()
        assert p is not None
        return await usage(svc, p.id)

    assert mw.run(counted) == {"hour": 2, "day": 2}
    # 0 = unlimited.
    _set_limits(mw, principal={"send_per_hour": 0, "send_per_day": 0})
    for _ in range(3):
        do_submit(mw, "alice@a.test", "alice@a.test", ["bob@a.test"], msg())


# -- SRS ----------------------------------------------------------------------------------------


def test_srs_round_trip_and_refusals() -> None:
    key = b"secret-one"
    fwd = srs.srs_forward("User.Name@origin.test", "fwd.test", key)
    assert fwd.startswith("SRS0=") and fwd.endswith("@fwd.test") and "=origin.test=User.Name@" in fwd
    assert srs.srs_reverse(fwd, key) == "User.Name@origin.test"
    assert srs.srs_reverse(fwd.lower(), key) == "user.name@origin.test"  # our MX lowercases local parts
    assert srs.srs_reverse(fwd, b"another key") is None
    h = fwd.split("=")[1]
    tampered = fwd.replace(h, "AAAA" if h.upper() != "AAAA" else "BBBB", 1)
    assert srs.srs_reverse(tampered, key) is None
    assert srs.srs_reverse("plain@fwd.test", key) is None
    # Null sender and our own domain are left alone.
    assert srs.srs_forward("", "fwd.test", key) == ""
    assert srs.srs_forward("me@fwd.test", "fwd.test", key) == "me@fwd.test"
    # A second hop makes SRS1, which reverses to the first hop's SRS0 address.
    hop2 = srs.srs_forward(fwd, "hop2.test", key)
    assert hop2.startswith("SRS1=") and hop2.endswith("@hop2.test") and "=fwd.test==" in hop2
    back = srs.srs_reverse(hop2, key)
    assert back == fwd.rpartition("@")[0] + "@fwd.test"
    assert srs.srs_reverse(srs.srs_forward(hop2, "hop3.test", key), key) == back  # keeps the first hop


def test_srs_expiry() -> None:
    key = b"k"
    old_day = srs._today() - srs.MAX_AGE_DAYS - 2
    tt = srs._timestamp(old_day)
    stale = f"SRS0={srs._hash(key, tt, 'origin.test', 'u')}={tt}=origin.test=u@fwd.test"
    assert srs.srs_reverse(stale, key) is None
    tt = srs._timestamp(srs._today() - 3)
    fresh = f"SRS0={srs._hash(key, tt, 'origin.test', 'u')}={tt}=origin.test=u@fwd.test"
    assert srs.srs_reverse(fresh, key) == "u@origin.test"


def test_srs_secret_made_once_and_kept(tmp_path: Path) -> None:
    svc = Services.create(Settings(data_dir=tmp_path / "d"))
    first = srs.srs_secret(svc)
    assert len(first) >= 32 and (tmp_path / "d" / "srs.key").stat().st_mode & 0o777 == 0o600
    again = Services.create(Settings(data_dir=tmp_path / "d"))
    assert srs.srs_secret(again) == first
    configured = Services.create(Settings(data_dir=tmp_path / "d", srs_secret="shared-cluster-secret"))
    assert srs.srs_secret(configured) == b"shared-cluster-secret"


# -- DSN ----------------------------------------------------------------------------------------


def test_dsn_is_rfc3464() -> None:
    original = b"From: a@x.test\r\nSubject: orig\r\nMessage-ID: <o@x.test>\r\n\r\nsecret body\r\n"
    from datetime import UTC, datetime

    raw = dsn.build_dsn(reporting_mta="mx.x.test", sender="a@x.test", original=original,
                        failures=[dsn.Failure("b@y.test", "5.1.1", "smtp; 550 5.1.1 unknown", "mx.y.test")],
                        arrival=datetime.now(UTC), queue_id=7)
    m = parsed(raw)
    assert m.get_content_type() == "multipart/report" and m.get_param("report-type") == "delivery-status"
    parts: Any = m.get_payload()
    assert isinstance(parts, list) and len(parts) == 3
    assert [p.get_content_type() for p in parts] == ["text/plain", "message/delivery-status",
                                                     "text/rfc822-headers"]
    blocks: Any = parts[1].get_payload()
    assert blocks[0]["Reporting-MTA"] == "dns; mx.x.test"
    assert blocks[1]["Final-Recipient"] == "rfc822; b@y.test" and blocks[1]["Status"] == "5.1.1"
    assert blocks[1]["Action"] == "failed" and blocks[1]["Remote-MTA"] == "dns; mx.y.test"
    assert blocks[1]["Diagnostic-Code"] == "smtp; 550 5.1.1 unknown"
    assert b"Subject: orig" in raw and b"secret body" not in raw
    assert m["Auto-Submitted"] == "auto-replied"
    assert dsn.status_from_reply(550, "no such user") == "5.0.0"
    assert dsn.status_from_reply(451, "4.7.1 greylisted") == "4.7.1"
    assert dsn.status_from_reply(550, "4.7.1 inconsistent") == "5.0.0"


# -- MX routing against a real DNS server --------------------------------------------------------


@pytest.fixture
def routing_dns(dns_server: Callable[..., DnsServer]) -> DnsServer:
    return dns_server({
        "dest.test": [("@", "MX", "20 mx2.dest.test."), ("@", "MX", "10 mx1.dest.test."),
                      ("mx1", "A", "127.0.0.2"), ("mx2", "A", "127.0.0.3"), ("mx2", "AAAA", "::1"),
                      ("amx", "A", "127.0.0.4"), ("nullmx", "MX", "0 ."),
                      ("dangling", "MX", "10 nowhere.dest.test.")],
    })


def _svc(tmp: Path, dns: DnsServer | None, **kw: object) -> Services:
    servers = ["127.0.0.1"]
    port = dns.port if dns else free_port()
    return Services.create(Settings(data_dir=tmp, dns_nameservers=servers, dns_port=port, **kw))  # type: ignore[arg-type]


def test_mx_order_fallbacks_and_failures(routing_dns: DnsServer, tmp_path: Path) -> None:
    svc = _svc(tmp_path, routing_dns, outbound_port=2525)

    async def go() -> None:
        hops = await destinations(svc, "dest.test")
        assert [(h.host, h.address, h.port) for h in hops] == [
            ("mx1.dest.test", "127.0.0.2", 2525), ("mx2.dest.test", "::1", 2525),
            ("mx2.dest.test", "127.0.0.3", 2525)]
        assert [(h.host, h.address) for h in await destinations(svc, "amx.dest.test")] == [
            ("amx.dest.test", "127.0.0.4")]  # no MX: the domain's own address
        for name, status, permanent in (("nullmx.dest.test", "5.1.10", True),
                                        ("nothing.dest.test", "5.1.2", True),
                                        ("dangling.dest.test", "4.4.3", False)):
            with pytest.raises(DestinationError) as exc:
                await destinations(svc, name)
            assert (exc.value.status, exc.value.permanent) == (status, permanent), name
        svc.settings.transport_map.update({"dest.test": "[127.0.0.9]:2600", "amx.dest.test": "dest.test:2601",
                                           "other.test": ":2602"})
        assert [(h.address, h.port) for h in await destinations(svc, "dest.test")] == [("127.0.0.9", 2600)]
        assert [(h.host, h.port) for h in await destinations(svc, "amx.dest.test")][0] == ("mx1.dest.test", 2601)
        with pytest.raises(DestinationError):  # other.test is not served: REFUSED = temporary
            await destinations(svc, "other.test")

    asyncio.run(go())


def test_dns_down_is_temporary(tmp_path: Path) -> None:
    svc = _svc(tmp_path, None)

    async def go() -> None:
        with pytest.raises(DestinationError) as exc:
            await destinations(svc, "anywhere.test")
        assert not exc.value.permanent and exc.value.status == "4.4.3"

    asyncio.run(go())

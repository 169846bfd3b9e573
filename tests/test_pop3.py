"""POP3 with stdlib poplib against a real server, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import imaplib
import poplib
import smtplib
import socket
import ssl
import time

import pytest
from sqlalchemy import select

from mailwright.services import Services
from mailwright.storage.models import MaildropLock
from tests.support.server import InProcessServer

PASSWORD = "pop3 password ok"


def provision(srv: InProcessServer, user: str = "pat", domain: str = "pop.test") -> str:
    with srv.api() as api:
        api.post("/api/principal", json={"name": domain, "type": "domain"})
        addr = f"{user}@{domain}"
        r = api.post("/api/principal", json={"name": addr, "type": "individual", "secrets": [PASSWORD],
                                             "emails": [addr]})
        assert r.status_code == 200, r.text
    return addr


def deliver(srv: InProcessServer, addr: str, subject: str, body: str = "hello") -> None:
    with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=30) as smtp:
        smtp.sendmail("sender@remote.test", [addr], f"Subject: {subject}\r\n\r\n{body}\r\n".encode())


def connect(srv: InProcessServer, addr: str) -> poplib.POP3:
    pop = poplib.POP3("127.0.0.1", srv.ports["pop3"], timeout=30)
    pop.user(addr)
    pop.pass_(PASSWORD)
    return pop


def test_pop3_session(server: InProcessServer) -> None:
    addr = provision(server)
    deliver(server, addr, "one", ".leading dot line\r\nsecond line")
    deliver(server, addr, "two")
    pop = connect(server, addr)
    count, size = pop.stat()
    assert count == 2 and size > 0
    resp, listing, _ = pop.list()
    assert resp.startswith(b"+OK") and len(listing) == 2
    assert sum(int(x.split()[1]) for x in listing) == size
    uidls = pop.uidl()[1]
    resp, lines, octets = pop.retr(1)
    assert b"Subject: one" in lines
    assert b".leading dot line" in lines  # poplib un-stuffs: the server stuffed it
    top = pop.top(2, 0)[1]
    assert b"Subject: two" in top and b"hello" not in top
    assert pop.dele(1).startswith(b"+OK")
    with pytest.raises(poplib.error_proto):
        pop.retr(1)  # deleted in this session
    assert pop.stat()[0] == 1
    pop.rset()
    assert pop.stat()[0] == 2
    pop.dele(1)
    pop.quit()

    pop = connect(server, addr)
    assert pop.stat()[0] == 1
    assert pop.uidl()[1][0].split()[1] == uidls[1].split()[1]  # UIDs stable across sessions
    pop.quit()


def test_pop3_and_imap_share_the_inbox(server: InProcessServer) -> None:
    addr = provision(server)
    deliver(server, addr, "shared")
    pop = connect(server, addr)
    pop.retr(1)
    pop.quit()  # RETR marks \Seen at QUIT
    imap = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=30)
    imap.login(addr, PASSWORD)
    assert imap.select("INBOX")[1][0] == b"1"
    typ, data = imap.fetch("1", "(FLAGS)")
    assert b"\\Seen" in data[0]
    imap.logout()
    pop = connect(server, addr)
    pop.dele(1)
    pop.quit()
    imap = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=30)
    imap.login(addr, PASSWORD)
    assert imap.select("INBOX")[1][0] == b"0"
    imap.logout()


def test_one_session_per_maildrop_and_no_delete_on_drop(server: InProcessServer) -> None:
    addr = provision(server)
    deliver(server, addr, "locked")
    first = connect(server, addr)
    second = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=30)
    second.user(addr)
    with pytest.raises(poplib.error_proto, match="IN-USE"):
        second.pass_(PASSWORD)
    second.quit()
    first.dele(1)
    first.sock.shutdown(socket.SHUT_RDWR)  # dropped without QUIT: nothing is deleted, the lock is released
    third = None
    for _ in range(50):  # the server notices the drop asynchronously
        try:
            third = connect(server, addr)
            break
        except poplib.error_proto:
            time.sleep(0.1)
    assert third is not None
    assert third.stat()[0] == 1
    third.quit()


def test_login_right_after_quit_finds_the_lease_free(server: InProcessServer) -> None:
    """A client that logs in again the moment it reads QUIT's +OK (fetchmail polling at a short
    interval) must not find its own finished session still holding the maildrop."""
    addr = provision(server)
    deliver(server, addr, "again")

    async def leases(svc: Services) -> int:
        async with svc.db.read() as s:
            return len((await s.execute(select(MaildropLock.principal_id))).all())

    for _ in range(10):
        pop = connect(server, addr)
        assert pop.stat()[0] == 1
        assert server.run(leases) == 1
        pop.quit()
        assert server.run(leases) == 0  # already when +OK arrived, not some time later


def test_bad_input_and_errors(server: InProcessServer) -> None:
    addr = provision(server)
    pop = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=30)
    with pytest.raises(poplib.error_proto, match="USER first"):
        pop._shortcmd("PASS x")
    with pytest.raises(poplib.error_proto):
        pop._shortcmd("STAT")
    pop.user(addr)
    with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
        pop.pass_("wrong")
    pop.user(addr)
    pop.pass_(PASSWORD)
    for bad in ("RETR", "RETR x", "RETR 99", "TOP 1", "DELE -1", "LIST 0", "XYZZY", "RETR 1 " + "9" * 40):
        with pytest.raises(poplib.error_proto):
            pop._shortcmd(bad)
    assert pop.noop().startswith(b"+OK")
    pop.quit()
    # an over-long line gets an error and the server stays up
    with socket.create_connection(("127.0.0.1", server.ports["pop3"]), timeout=10) as s:
        s.recv(1024)
        s.sendall(b"USER " + b"a" * 5000 + b"\r\n")
        assert s.recv(1024).startswith(b"-ERR")
    assert connect(server, addr).stat()[0] == 0


def test_auth_plain_capa_and_tls(server: InProcessServer) -> None:
    addr = provision(server)
    deliver(server, addr, "tls")
    pop = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=30)
    caps = pop.capa()
    assert "STLS" in caps and "UIDL" in caps and "TOP" in caps
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    pop.stls(ctx)
    assert "STLS" not in pop.capa()
    token = base64.b64encode(f"\0{addr}\0{PASSWORD}".encode()).decode()
    assert pop._shortcmd(f"AUTH PLAIN {token}").startswith(b"+OK")
    assert pop.stat()[0] == 1
    pop.quit()
    pops = poplib.POP3_SSL("127.0.0.1", server.ports["pop3s"], context=ctx, timeout=30)
    pops.user(addr)
    pops.pass_(PASSWORD)
    assert pops.stat()[0] == 1
    pops.quit()


def test_plaintext_refused_off_loopback_policy(tmp_path: object, database_url: str) -> None:
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    srv = InProcessServer(tmp_path / "d", database_url, allow_plaintext_auth_on_loopback=False).start()
    try:
        addr = provision(srv)
        pop = poplib.POP3("127.0.0.1", srv.ports["pop3"], timeout=30)
        assert "USER" not in pop.capa()
        with pytest.raises(poplib.error_proto, match="TLS"):
            pop.user(addr)
        pop.quit()
    finally:
        srv.stop()

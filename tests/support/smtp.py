"""Helpers for the SMTP tests: provisioning through the API, raw SMTP sessions, IMAP reads."""

from __future__ import annotations

import imaplib
import socket
import ssl
from typing import Any

from sqlalchemy import update

from mailwright.services import Services
from tests.support.server import InProcessServer

PASSWORD = "correct horse battery"


def add_domain(srv: InProcessServer, domain: str) -> None:
    with srv.api() as api:
        r = api.post("/api/principal", json={"name": domain, "type": "domain"})
        assert r.status_code == 200, r.text


def add_mailbox(srv: InProcessServer, addr: str, *, quota: int | None = None, aliases: list[str] | None = None) -> str:
    body: dict[str, Any] = {"name": addr, "type": "individual", "secrets": [PASSWORD], "emails": [addr, *(aliases or [])]}
    if quota is not None:
        body["quota"] = quota
    with srv.api() as api:
        r = api.post("/api/principal", json=body)
        assert r.status_code == 200, r.text
        return str(r.json()["data"])


def add_list(srv: InProcessServer, addr: str, members: list[str]) -> str:
    with srv.api() as api:
        r = api.post("/api/principal", json={"name": addr, "type": "list", "emails": [addr], "members": members})
        assert r.status_code == 200, r.text
        return str(r.json()["data"])


def set_catch_all(srv: InProcessServer, domain: str, principal_id: str) -> None:
    from mailwright.storage.models import Domain

    async def go(svc: Services) -> None:
        async with svc.db.write() as s:
            await s.execute(update(Domain).where(Domain.name == domain).values(catch_all_principal_id=principal_id))

    srv.run(go)


def set_tenant_status(srv: InProcessServer, principal_id: str, status: str) -> None:
    from mailwright.storage.models import Principal, Tenant

    async def go(svc: Services) -> None:
        async with svc.db.write() as s:
            p = await s.get(Principal, principal_id)
            assert p is not None
            await s.execute(update(Tenant).where(Tenant.id == p.tenant_id).values(status=status))

    srv.run(go)


def queued(srv: InProcessServer) -> list[Any]:
    """Every message in the outbound queue (delivery.queue.list_messages)."""
    from mailwright.delivery import queue

    async def go(svc: Services) -> list[Any]:
        async with svc.db.read() as s:
            res = await queue.list_messages(s)
        return list(res[0] if isinstance(res, tuple) else res)

    return srv.run(go)


def imap_messages(srv: InProcessServer, addr: str, mailbox: str = "INBOX") -> list[bytes]:
    imap = imaplib.IMAP4("127.0.0.1", srv.ports["imap"], timeout=30)
    try:
        typ, _ = imap.login(addr, PASSWORD)
        assert typ == "OK"
        typ, data = imap.select(mailbox)
        assert typ == "OK", data
        n = int(data[0] or 0)
        out: list[bytes] = []
        for i in range(1, n + 1):
            typ, fetched = imap.fetch(str(i), "(BODY.PEEK[])")
            assert typ == "OK"
            out.append(fetched[0][1])  # type: ignore[index]
        return out
    finally:
        imap.logout()


class RawSMTP:
    """A line-level SMTP client for tests that need to send what smtplib will not."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 20, tls: bool = False) -> None:
        sock = socket.create_connection((host, port), timeout=timeout)
        if tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            sock = ctx.wrap_socket(sock)
        self.sock = sock
        self.buf = b""
        self.greeting = self.reply()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed: " + self.buf.decode("latin-1"))
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def reply(self) -> tuple[int, str]:
        lines = []
        while True:
            ln = self.line()
            lines.append(ln[4:].decode("utf-8", "replace"))
            if ln[3:4] != b"-":
                return int(ln[:3]), "\n".join(lines)

    def cmd(self, text: str | bytes) -> tuple[int, str]:
        self.send((text.encode() if isinstance(text, str) else text) + b"\r\n")
        return self.reply()

    def closed(self) -> bool:
        """True once the server has closed the connection (reads EOF)."""
        try:
            self.sock.settimeout(5)
            data = self.sock.recv(65536)
            self.buf += data
            return data == b""
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self.sock.close()

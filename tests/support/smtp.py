"""Helpers for the SMTP tests: provisioning through the API, raw SMTP sessions, IMAP reads."""

from __future__ import annotations

import imaplib
import socket
import ssl
from pathlib import Path
from typing import Any

from sqlalchemy import update

from mailwright.services import Services
from tests.support.server import InProcessServer, free_port

PASSWORD = "correct horse battery"


def add_domain(srv: InProcessServer, domain: str) -> None:
    with srv.api() as api:
        r = api.post("/api/principal", json={"name": domain, "type": "domain"})
        assert r.status_code == 200, r.text


def add_mailbox(srv: InProcessServer, addr: str, *, quota: int | None = None, aliases: list[str] | None = None) -> str:
    body: dict[str, Any] = {"name": addr, "type": "individual", "secrets": [PASSWORD],
                            "emails": [addr, *(aliases or [])]}
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
    """The raw messages in one of `addr`'s mailboxes, over IMAP (a real client)."""
    imap = imaplib.IMAP4("127.0.0.1", srv.ports["imap"], timeout=30)
    try:
        assert imap.login(addr, PASSWORD)[0] == "OK"
        status, data = imap.select(mailbox)
        assert status == "OK", data
        n = int(data[0] or 0)
        out: list[bytes] = []
        for i in range(1, n + 1):
            ok, fetched = imap.fetch(str(i), "(BODY.PEEK[])")
            assert ok == "OK"
            item = fetched[0]
            assert isinstance(item, tuple)
            out.append(bytes(item[1]))
        return out
    finally:
        imap.logout()


def stored_messages(srv: InProcessServer, addr: str, mailbox: str = "INBOX") -> list[bytes]:
    """The raw messages in one of `addr`'s mailboxes, read through the mailstore services.

    The SMTP tests judge what SMTP stored; reading it through the mailstore keeps them
    independent of the IMAP server (which has its own tests).
    """
    from mailwright.directory.principals import find_principal
    from mailwright.mailstore import mailboxes, reads

    async def go(svc: Services) -> list[bytes]:
        async with svc.db.read() as s:
            p = await find_principal(s, addr)
            assert p is not None, addr
            name = mailbox
            if mailbox.startswith("\\"):
                box = await mailboxes.get_by_special_use(s, p.id, mailbox)
                assert box is not None, mailbox
                name = box.name
        opened = await reads.open_mailbox(svc, p.id, name)
        assert opened is not None, name
        return [await reads.raw_message(svc, e.message) for e in opened[1]]

    return srv.run(go)


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


def start_server(data_dir: Path, database_url: str, **overrides: Any) -> InProcessServer:
    """An in-process node whose outbound mail goes to a closed local port.

    Forwards and bounces then stay in the queue (temporary failure, retried later) where the
    tests can look at them, instead of racing the queue runner's DNS lookups and DSNs.
    """
    overrides.setdefault("transport_map", {"*": f"[127.0.0.1]:{free_port()}"})
    overrides.setdefault("queue_retry_base_seconds", 3600.0)
    return InProcessServer(data_dir, database_url, **overrides).start()

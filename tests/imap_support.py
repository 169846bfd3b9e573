"""Helpers for the IMAP protocol tests: an account with mail, and a raw-socket IMAP client."""

from __future__ import annotations

import re
import socket
import time

from mailwright.mailstore.messages import Target, deliver
from mailwright.services import Services
from tests.support.server import InProcessServer


def make_account(srv: InProcessServer, addr: str = "alice@example.test", password: str = "correct horse battery",
                 quota: int | None = None) -> str:
    domain = addr.split("@")[1]
    with srv.api() as api:
        api.post("/api/principal", json={"name": domain, "type": "domain"})
        body: dict[str, object] = {"name": addr, "type": "individual", "secrets": [password], "emails": [addr]}
        if quota is not None:
            body["quota"] = quota
        r = api.post("/api/principal", json=body)
        assert r.status_code == 200, r.text
    return addr


def principal_id(srv: InProcessServer, addr: str) -> str:
    from sqlalchemy import select

    from mailwright.storage.models import Principal

    async def go(svc: Services) -> str:
        async with svc.db.read() as s:
            return str((await s.execute(select(Principal.id).where(Principal.name == addr))).scalar_one())

    return srv.run(go)


def deliver_raw(srv: InProcessServer, addr: str, raw: bytes, mailbox: str = "INBOX", flags: str = "") -> int:
    pid = principal_id(srv, addr)

    async def go(svc: Services) -> int:
        st = await deliver(svc, raw, [Target(pid, mailbox, flags)])
        return st[0].uid

    return srv.run(go)


def simple_message(i: int, subject: str | None = None, body: str = "hello world", frm: str = "bob@remote.test",
                   extra: str = "") -> bytes:
    subject = subject if subject is not None else f"message {i}"
    return (f"From: Bob <{frm}>\r\nTo: alice@example.test\r\nSubject: {subject}\r\n"
            f"Date: Mon, {1 + i % 27:02d} Jan 2024 10:00:00 +0000\r\nMessage-ID: <m{i}@remote.test>\r\n{extra}"
            f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body} {i}\r\n").encode()


class Raw:
    """A line-level IMAP client: send a tagged command, get (untagged lines, tagged line)."""

    def __init__(self, port: int, timeout: float = 20) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.n = 0
        self.greeting = self.line()

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        m = re.search(rb"\{(\d+)\}$", line)
        if m:
            n = int(m.group(1))
            while len(self.buf) < n:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("closed")
                self.buf += chunk
            lit, self.buf = self.buf[:n], self.buf[n:]
            return line + b"\r\n" + lit + self.line()
        return line

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def cmd(self, text: str | bytes, tag: str | None = None) -> tuple[list[bytes], bytes]:
        self.n += 1
        tag = tag or f"t{self.n}"
        data = text.encode() if isinstance(text, str) else text
        self.send(tag.encode() + b" " + data + b"\r\n")
        return self.until(tag)

    def until(self, tag: str) -> tuple[list[bytes], bytes]:
        out = []
        while True:
            ln = self.line()
            if ln.startswith(tag.encode() + b" "):
                return out, ln
            out.append(ln)

    def ok(self, text: str | bytes) -> list[bytes]:
        lines, tagged = self.cmd(text)
        assert b" OK" in tagged[:20], (text, lines, tagged)
        return lines

    def login(self, user: str = "alice@example.test", pw: str = "correct horse battery") -> None:
        self.ok(f'LOGIN {user} "{pw}"')

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def wait_for(pred, timeout: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.02)
    return False

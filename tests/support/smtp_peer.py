"""A scriptable remote MTA for outbound-delivery tests: a real aiosmtpd server on 127.0.0.1.

It stands in for "somebody else's mail server" (not for any Mailwright component): tests set
the reply it gives to MAIL, to each RCPT and to DATA, and read back what it received, over how
many connections, and whether the session was encrypted (it offers STARTTLS with a self-signed
certificate).
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.support.server import free_port


@dataclass
class Received:
    mail_from: str
    rcpts: list[str]
    data: bytes
    tls: bool
    connection: int
    helo: str = ""
    at: float = field(default_factory=time.monotonic)  # when it was accepted (before the 250)


@dataclass
class PeerScript:
    mail_reply: str | None = None  # None = 250
    rcpt_replies: dict[str, str] = field(default_factory=dict)  # address -> reply; default 250
    data_reply: str | None = None
    data_delay: float = 0.0  # seconds to think before answering DATA (a slow remote)


class _Handler:
    def __init__(self, peer: SmtpPeer) -> None:
        self.peer = peer

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          options: list[str]) -> str:
        if self.peer.script.mail_reply:
            return self.peer.script.mail_reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          options: list[str]) -> str:
        reply = self.peer.script.rcpt_replies.get(address.lower())
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.peer.script.data_delay:
            await asyncio.sleep(self.peer.script.data_delay)
        if self.peer.script.data_reply:
            return self.peer.script.data_reply
        data = envelope.original_content or b""
        assert isinstance(data, bytes)
        conn = getattr(session, "mw_conn", 0)
        with self.peer.lock:
            self.peer.received.append(Received(envelope.mail_from or "", list(envelope.rcpt_tos), data,
                                               session.ssl is not None, conn, session.host_name or ""))
        return "250 2.0.0 OK: accepted"


class _Controller(Controller):
    def __init__(self, peer: SmtpPeer, **kwargs: Any) -> None:
        self.peer = peer
        super().__init__(_Handler(peer), **kwargs)

    def factory(self) -> SMTP:
        with self.peer.lock:
            self.peer.connections += 1
            n = self.peer.connections
        smtp = SMTP(self.handler, **self.SMTP_kwargs)
        orig = smtp._create_session

        def create_session() -> Session:
            sess = orig()
            sess.mw_conn = n  # type: ignore[attr-defined]
            return sess

        smtp._create_session = create_session  # type: ignore[method-assign]
        return smtp


class SmtpPeer:
    def __init__(self, cert_dir: Path, *, tls: bool = True) -> None:
        self.script = PeerScript()
        self.received: list[Received] = []
        self.connections = 0
        self.lock = threading.Lock()
        self.port = free_port()
        kwargs: dict[str, Any] = {"decode_data": False, "data_size_limit": 0}
        if tls:
            from mailwright.config import Settings
            from mailwright.runtime.tls import ensure_certificate

            cert, key = ensure_certificate(Settings(data_dir=cert_dir, hostname="peer.test"))
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(str(cert), str(key))
            kwargs["tls_context"] = ctx
        self.controller = _Controller(self, hostname="127.0.0.1", port=self.port, ready_timeout=10, **kwargs)

    def start(self) -> SmtpPeer:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def wait_for(self, pred: Callable[[list[Received]], bool], timeout: float = 20) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                snapshot = list(self.received)
            if pred(snapshot):
                return snapshot
            time.sleep(0.05)
        raise AssertionError(f"peer did not receive the expected mail; got {self.received!r}")

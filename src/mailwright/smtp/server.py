"""SMTP listeners: one protocol object per connection on an inherited, already-bound socket.

``start_mx`` serves port 25 (no AUTH, STARTTLS offered); ``start_submission`` serves 587
(STARTTLS, AUTH once TLS is up) and, with ``implicit_tls=True``, 465 (TLS from the first byte).
runtime/node.py picks both up by name.
"""

from __future__ import annotations

import asyncio
import socket
import ssl

from mailwright.services import Services
from mailwright.smtp.auth import SubmissionSMTP
from mailwright.smtp.inbound import InboundHandler
from mailwright.smtp.limits import SmtpLimits
from mailwright.smtp.protocol import MailwrightSMTP
from mailwright.smtp.submission import SubmissionHandler


async def start_mx(svc: Services, sock: socket.socket, tls: ssl.SSLContext | None) -> asyncio.Server:
    limits = SmtpLimits.from_settings(svc.settings)
    handler = InboundHandler(svc, limits)
    loop = asyncio.get_running_loop()

    def factory() -> MailwrightSMTP:
        return MailwrightSMTP(handler, limits=limits, hostname=svc.settings.hostname, tls_context=tls)

    return await loop.create_server(factory, sock=sock)


async def start_submission(
    svc: Services, sock: socket.socket, tls: ssl.SSLContext | None, implicit_tls: bool
) -> asyncio.Server:
    limits = SmtpLimits.from_settings(svc.settings)
    handler = SubmissionHandler(svc, limits)
    loop = asyncio.get_running_loop()
    if implicit_tls and tls is None:
        raise RuntimeError("submissions (implicit TLS) needs a TLS certificate")

    def factory() -> SubmissionSMTP:
        return SubmissionSMTP(
            handler, svc=svc, limits=limits, hostname=svc.settings.hostname, tls_context=tls,
            implicit_tls=implicit_tls,
            allow_plaintext_auth_on_loopback=svc.settings.allow_plaintext_auth_on_loopback,
        )

    return await loop.create_server(factory, sock=sock, ssl=tls if implicit_tls else None)

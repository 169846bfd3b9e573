"""SMTP listeners: build an aiosmtpd protocol per connection on an inherited socket."""

from __future__ import annotations

import asyncio
import socket
import ssl

from aiosmtpd.smtp import SMTP

from mailwright.services import Services
from mailwright.smtp.inbound import InboundHandler


async def start_mx(svc: Services, sock: socket.socket, tls: ssl.SSLContext | None) -> asyncio.Server:
    handler = InboundHandler(svc)
    loop = asyncio.get_running_loop()

    def factory() -> SMTP:
        return SMTP(
            handler,
            hostname=svc.settings.hostname,
            ident="Mailwright ESMTP",
            data_size_limit=svc.settings.max_message_size,
            enable_SMTPUTF8=True,
            decode_data=False,
            tls_context=tls,
            require_starttls=False,
            timeout=300,
        )

    return await loop.create_server(factory, sock=sock)

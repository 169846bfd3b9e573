"""The IMAP listeners (IMAP with STARTTLS, IMAPS with implicit TLS).

`start_imap` is what `runtime.node` calls; each connection runs one `session.ImapSession`.
A session that fails with an unexpected exception is logged and closed; the server goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl

from mailwright.imap.session import ImapSession
from mailwright.services import Services

log = logging.getLogger(__name__)
STREAM_LIMIT = 64 * 1024  # the longest command line we buffer (protocol.Limits.max_line)


async def start_imap(svc: Services, sock: socket.socket, tls: ssl.SSLContext | None, *, implicit_tls: bool
                     ) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await ImapSession(svc, reader, writer, tls, implicit_tls).run()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, TimeoutError):
            pass
        except asyncio.CancelledError:  # node shutting down: end quietly (no "exception never retrieved")
            pass
        except Exception:  # noqa: BLE001 - one broken session must never take the server down
            log.exception("IMAP session failed")
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    return await asyncio.start_server(handle, sock=sock, ssl=tls if implicit_tls else None, limit=STREAM_LIMIT)

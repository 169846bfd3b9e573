"""A node: every listener of one process (HTTP, SMTP MX/submission, IMAP, POP3) on one loop.

`Node.start` takes already-bound sockets (see runtime.sockets), so tests can hand it ephemeral
ports and `serve --workers N` can hand each forked worker the parent's sockets. `stop` closes
the listeners first, then gives open connections a grace period to finish (drain).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import uvicorn

from mailwright.api.app import create_app
from mailwright.imap.server import start_imap
from mailwright.pop3.server import start_pop3
from mailwright.runtime.tls import server_context
from mailwright.services import Services
from mailwright.smtp.server import start_mx, start_submission

log = logging.getLogger(__name__)


class Node:
    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self.servers: list[asyncio.Server] = []
        self.http: uvicorn.Server | None = None
        self._http_task: asyncio.Task[Any] | None = None

    async def start(self, socks: dict[str, socket.socket]) -> None:
        tls = server_context(self.svc.settings)
        starters: dict[str, Callable[[socket.socket], Awaitable[asyncio.Server]]] = {
            "smtp": lambda s: start_mx(self.svc, s, tls),
            "submission": lambda s: start_submission(self.svc, s, tls, implicit_tls=False),
            "submissions": lambda s: start_submission(self.svc, s, tls, implicit_tls=True),
            "imap": lambda s: start_imap(self.svc, s, tls, implicit_tls=False),
            "imaps": lambda s: start_imap(self.svc, s, tls, implicit_tls=True),
            "pop3": lambda s: start_pop3(self.svc, s, tls, implicit_tls=False),
            "pop3s": lambda s: start_pop3(self.svc, s, tls, implicit_tls=True),
        }
        for name, starter in starters.items():
            if name in socks:
                self.servers.append(await starter(socks[name]))
        if "http" in socks:
            config = uvicorn.Config(create_app(self.svc), log_level="warning", lifespan="off",
                                    access_log=False, timeout_graceful_shutdown=5)
            self.http = _EmbeddedHTTPServer(config)
            self._http_task = asyncio.create_task(self.http.serve(sockets=[socks["http"]]))

    async def stop(self, grace: float = 10.0) -> None:
        """Stop accepting, let open sessions finish for up to `grace` seconds, then cancel them."""
        for srv in self.servers:
            srv.close()
        if self.http is not None:
            self.http.should_exit = True
        waits: list[Any] = [srv.wait_closed() for srv in self.servers]
        if self._http_task is not None:
            waits.append(self._http_task)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        if waits:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.gather(*waits, return_exceptions=True), timeout=grace)
        me = asyncio.current_task()
        while loop.time() < deadline:
            others = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
            if not others:
                return
            await asyncio.sleep(0.05)
        others = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
        for t in others:
            t.cancel()
        if others:
            await asyncio.wait(others, timeout=2)


class _EmbeddedHTTPServer(uvicorn.Server):
    """uvicorn inside our loop: signals belong to the node, not to uvicorn."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

"""Real Mailwright servers for tests: in-process (a thread with its own loop) or a subprocess.

Every listener gets an ephemeral 127.0.0.1 port. Nothing is mocked: tests talk to the servers
with real clients over real sockets.
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import httpx

from mailwright.config import Settings
from mailwright.runtime import eventloop
from mailwright.runtime.bootstrap import bootstrap
from mailwright.runtime.node import Node
from mailwright.runtime.sockets import bind
from mailwright.services import Services

T = TypeVar("T")
LISTENERS = ("http", "smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s")


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


_rng = random.Random()


def free_port() -> int:
    """A free 127.0.0.1 port for a child process to listen on.

    It is drawn from below the kernel's ephemeral range: a port the kernel hands out to
    outgoing connections (every test client makes hundreds) could be taken between the moment
    it is chosen here and the moment the child binds it, or when a killed server restarts on it.
    """
    low, _high = _ephemeral_range()
    floor = 10000 if low > 12000 else 1024
    for _ in range(200):
        port = _rng.randrange(floor, low)
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class InProcessServer:
    """A whole Mailwright node in a background thread."""

    def __init__(self, data_dir: Path, database_url: str, **overrides: Any) -> None:
        self.socks = {name: bind("127.0.0.1", 0) for name in LISTENERS}
        self.ports = {name: int(s.getsockname()[1]) for name, s in self.socks.items()}
        self.settings = Settings(
            data_dir=data_dir,
            database_url=database_url,
            **{f"{n}_port": p for n, p in self.ports.items()},
            **{"hostname": "mx.test.local", **overrides},
        )
        self.loop = eventloop.loop_factory(self.settings.event_loop)()  # the loop `serve` runs on
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.svc: Services | None = None
        self.node: Node | None = None
        self.admin_key: str | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['http']}"

    def call(self, coro: Awaitable[T], timeout: float = 60) -> T:
        fut: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)  # type: ignore[arg-type]
        return fut.result(timeout)

    def start(self) -> InProcessServer:
        self.thread.start()

        async def go() -> None:
            self.svc = Services.create(self.settings)
            await self.svc.start()
            self.admin_key = await bootstrap(self.svc)
            self.node = Node(self.svc)
            await self.node.start(self.socks)
            from mailwright.runtime.background import start_background

            self._bg = await start_background(self.svc)

        self.call(go())
        return self

    def stop(self) -> None:
        async def go() -> None:
            for t in getattr(self, "_bg", []):
                t.cancel()
            if self.node is not None:
                await self.node.stop(grace=0.5)
            if self.svc is not None:
                await self.svc.close()

        try:
            self.call(go(), timeout=20)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            for s in self.socks.values():
                s.close()

    def api(self, key: str | None = None) -> httpx.Client:
        return httpx.Client(
            base_url=self.base_url, headers={"Authorization": f"Bearer {key or self.admin_key}"}, timeout=30
        )

    def run(self, fn: Callable[[Services], Awaitable[T]]) -> T:
        """Run a service-level coroutine inside the server's loop (setup and inspection only)."""
        assert self.svc is not None
        return self.call(fn(self.svc))


def mx_env(dns_server: Callable[..., Any], **extra: str) -> tuple[str, dict[str, str]]:
    """(admin token, environment) for a `ServeProcess` that receives mail from remote.test:
    the MX checks SPF/DKIM/DMARC of every message, so it gets a DNS server of its own that
    answers at once (remote.test's SPF allows 127.0.0.1). `extra`: more MAILWRIGHT_* settings."""
    dns = dns_server({"remote.test": [("@", "TXT", "v=spf1 ip4:127.0.0.1 -all")]})
    token = "sa_" + secrets.token_urlsafe(24)
    env = {"MAILWRIGHT_ADMIN_TOKEN": token, "MAILWRIGHT_DNS_NAMESERVERS": "127.0.0.1",
           "MAILWRIGHT_DNS_PORT": str(dns.port), **extra}
    return token, env


class ServeProcess:
    """`python -m mailwright serve` as a child process, for crash/restart and CLI tests."""

    def __init__(
        self, data_dir: Path, database_url: str, extra_env: dict[str, str] | None = None, args: list[str] | None = None
    ) -> None:
        self.data_dir = data_dir
        self.database_url = database_url
        self.ports = {name: free_port() for name in LISTENERS}
        self.extra_env = extra_env or {}
        self.args = args or []
        self.proc: subprocess.Popen[str] | None = None
        self.output = ""

    def command(self) -> list[str]:
        cmd = [
            sys.executable,
            "-m",
            "mailwright",
            "serve",
            "--data-dir",
            str(self.data_dir),
            "--database-url",
            self.database_url,
            "--hostname",
            "mx.test.local",
        ]
        for name, port in self.ports.items():
            cmd += [f"--{name}-port", str(port)]
        return cmd + self.args

    def start(self, timeout: float = 90) -> ServeProcess:
        """Start serve; a port still held by a dying process (a restart) is waited for, briefly."""
        for attempt in range(20):
            try:
                return self._start_once(timeout)
            except RuntimeError as exc:
                if "already in use" not in str(exc) or attempt == 19:
                    raise
                self.output = ""
                time.sleep(0.5)
        raise AssertionError("unreachable")

    def _start_once(self, timeout: float) -> ServeProcess:
        env = {**os.environ, **self.extra_env}
        self.proc = subprocess.Popen(
            self.command(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.output += self.proc.stdout.read() if self.proc.stdout else ""
                raise RuntimeError(f"serve exited with {self.proc.returncode}: {self.output}")
            try:
                r = httpx.get(f"http://127.0.0.1:{self.ports['http']}/health", timeout=1)
                if r.status_code == 200 and self._smtp_up():
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("serve did not come up")

    def _smtp_up(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.ports["smtp"]), timeout=1):
                return True
        except OSError:
            return False

    def read_output(self) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        return self.proc.stdout.read()

    def kill(self, sig: int = signal.SIGKILL) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        code = self.proc.wait(30)
        if self.proc.stdout:
            self.output += self.proc.stdout.read()
        return code

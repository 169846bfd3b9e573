"""Helpers for the agent-inbox dialect tests: tenants/inboxes over the API, a webhook receiver."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.support.server import InProcessServer


def client(srv: InProcessServer, key: str, *, header: str = "bearer") -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if header == "bearer" else {"X-API-Key": key}
    return httpx.Client(base_url=srv.base_url, headers=headers, timeout=30)


def make_tenant(srv: InProcessServer, name: str) -> dict[str, Any]:
    with srv.api() as api:
        r = api.post("/v1/tenants", json={"name": name})
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def make_inbox(srv: InProcessServer, key: str, username: str, **extra: Any) -> dict[str, Any]:
    with client(srv, key) as api:
        r = api.post("/v1/inboxes", json={"username": username, **extra})
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def wait_for(fn: Callable[[], Any], timeout: float = 15.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A real HTTP server on 127.0.0.1 that records POSTs; `statuses` are answered in order
    (then 200)."""

    statuses: list[int] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)


@contextmanager
def webhook_receiver(statuses: list[int] | None = None) -> Iterator[Receiver]:
    rec = Receiver(statuses=list(statuses or []))

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            with rec.lock:
                rec.received.append(Received({k.lower(): v for k, v in self.headers.items()}, body))
                code = rec.statuses.pop(0) if rec.statuses else 200
            self.send_response(code)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    rec.url = f"http://127.0.0.1:{httpd.server_address[1]}/hook"
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        yield rec
    finally:
        httpd.shutdown()
        httpd.server_close()

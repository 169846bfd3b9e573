"""Helpers for the mail.cx-dialect tests: run documented curl commands against a test server."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.server import InProcessServer

DOC_BASE = "https://api.mail.cx"


@dataclass
class CurlResult:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def need_curl() -> str:
    path = shutil.which("curl")
    if path is None:
        import os

        if os.environ.get("CI") == "true":
            pytest.fail("curl is required (Debian package curl)")
        pytest.skip("curl is not installed (Debian package curl)")
    return path


def curl(server: InProcessServer, documented: str, **subst: str) -> CurlResult:
    """Run a documented curl command (shell syntax, line continuations allowed) against `server`:
    the documented base URL is replaced by the server's, and `subst` replaces placeholders
    (e.g. YOUR_TOKEN)."""
    need_curl()
    text = documented.replace("\\\n", " ").replace(DOC_BASE, server.base_url)
    for k, v in subst.items():
        text = text.replace(k, v)
    argv = shlex.split(text)
    assert argv[0] == "curl"
    with tempfile.TemporaryDirectory() as d:
        hdr, body = Path(d) / "h", Path(d) / "b"
        proc = subprocess.run([argv[0], "-sS", "-D", str(hdr), "-o", str(body), "-w", "%{http_code}", *argv[1:]],
                              capture_output=True, text=True, timeout=30, check=False)
        assert proc.returncode == 0, proc.stderr
        headers: dict[str, str] = {}
        for line in hdr.read_text("latin-1").splitlines()[1:]:
            if ":" in line:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
        return CurlResult(int(proc.stdout.strip()), headers, body.read_bytes())


def add_system_domain(server: InProcessServer, domain: str) -> None:
    with server.api() as api:
        r = api.post("/api/admin/system-domains", json={"domain": domain})
        assert r.status_code == 201, r.text


def sign_up(server: InProcessServer, address: str, password: str = "supersecret",
            token: str | None = None) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    r = httpx.post(f"{server.base_url}/api/accounts", json={"address": address, "password": password},
                   headers=headers, timeout=30)
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}

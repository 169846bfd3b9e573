"""mail.cx dialect CLIs against a running server's database (SQLite only, for speed):
`mailwright system-domain add|list|remove` and `mailwright selfservice pro ADDRESS`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from tests.support.mailcx import bearer, sign_up
from tests.support.server import InProcessServer


def _cli(data: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mailwright", *args, "--data-dir", str(data), "--database-url", url],
                          capture_output=True, text=True, timeout=120, check=False)


def test_system_domain_and_pro_cli(tmp_path: Path) -> None:
    data = tmp_path / "data"
    url = f"sqlite+aiosqlite:///{tmp_path / 'mailwright.db'}"
    srv = InProcessServer(data, url).start()
    try:
        out = _cli(data, url, "system-domain", "add", "Cli.Example")
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "cli.example"
        out = _cli(data, url, "system-domain", "list")
        assert out.returncode == 0 and "cli.example" in out.stdout.split()

        acct = sign_up(srv, "boss@cli.example")  # the running server sees the CLI's domain
        out = _cli(data, url, "selfservice", "pro", "boss@cli.example")
        assert out.returncode == 0, out.stderr
        token = out.stdout.strip().splitlines()[-1]
        assert token.startswith("tm_pro_") and " " not in token
        assert httpx.get(f"{srv.base_url}/pro/api/domains", headers=bearer(token)).json() == []
        me = httpx.get(f"{srv.base_url}/api/me", headers=bearer(acct["token"])).json()
        assert me["role"] == "pro"
        out = _cli(data, url, "selfservice", "pro", "nobody@cli.example")
        assert out.returncode != 0 and "nobody@cli.example" in out.stderr

        out = _cli(data, url, "system-domain", "remove", "cli.example")
        assert out.returncode == 0, out.stderr
        assert httpx.get(f"{srv.base_url}/api/me", headers=bearer(acct["token"])).status_code == 401
    finally:
        srv.stop()

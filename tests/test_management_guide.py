"""The Mailbux guide's own examples against a real `mailwright serve`: only the base URL and the
token are changed. The curl examples run the real `curl` binary; the Python ones run as scripts
(they use `requests`). A tenant admin key (`tk_`) is minted with `mailwright key create`.
"""

from __future__ import annotations

import email
import imaplib
import json
import os
import re
import shutil
import smtplib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import ServeProcess

GUIDE = Path(__file__).parent / "data" / "mailbux_guide"
GUIDE_BASE = "https://mail.mailbux.com"


def substitute(text: str, base: str, token: str) -> str:
    return text.replace(GUIDE_BASE, base).replace("YOUR_ACCESS_TOKEN", token).replace("YOUR_TOKEN", token)


@pytest.fixture
def serve(tmp_path: Path, database_url: str) -> Iterator[tuple[ServeProcess, str, str]]:
    proc = ServeProcess(tmp_path / "data", database_url).start()
    try:
        out = subprocess.run([sys.executable, "-m", "mailwright", "key", "create", "--tenant", "default",
                              "--data-dir", str(tmp_path / "data"), "--database-url", database_url],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        token = out.stdout.strip().splitlines()[-1]
        assert token.startswith("tk_")
        yield proc, f"http://127.0.0.1:{proc.ports['http']}", token
    finally:
        proc.kill(15)


def run_curl(name: str, base: str, token: str, curl_home: Path) -> tuple[int, str]:
    """Run one guide example as written; a curlrc adds only the status line to its output."""
    script = substitute((GUIDE / "curl" / name).read_text(), base, token)
    env = {**os.environ, "CURL_HOME": str(curl_home)}
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, (name, out.stderr)
    body, _, status = out.stdout.rpartition("\n")
    return int(status), body


def run_python(name: str, base: str, token: str, tmp_path: Path) -> str:
    script = tmp_path / name.removesuffix(".txt")
    script.write_text(substitute((GUIDE / name).read_text(), base, token))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.mark.timeout(400)  # a serve process and a CLI process start, plus ~30 client processes
def test_guide_examples_against_serve(serve: tuple[ServeProcess, str, str], tmp_path: Path) -> None:
    """One server for all examples (starting `serve` dominates the cost): curl first, then Python."""
    if shutil.which("curl") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("curl is required")
        pytest.skip("curl is not installed")
    curl_examples(serve, tmp_path)
    python_examples(serve, tmp_path)


def curl_examples(serve: tuple[ServeProcess, str, str], tmp_path: Path) -> None:
    _, base, token = serve
    (tmp_path / ".curlrc").write_text('silent\nshow-error\nwrite-out = "\\n%{http_code}"\n')

    def curl(name: str) -> tuple[int, object]:
        status, body = run_curl(name, base, token, tmp_path)
        return status, json.loads(body) if body.strip() else None

    assert curl("01_list_domains.sh") == (200, {"data": {"items": [], "total": 0}})
    status, body = curl("02_add_domain.sh")
    assert status == 200 and isinstance(body, dict) and isinstance(body["data"], str)
    status, body = curl("01_list_domains.sh")
    assert status == 200 and isinstance(body, dict)
    assert [(i["name"], i["type"]) for i in body["data"]["items"]] == [("example.com", "domain")]
    assert body["data"]["total"] == 1
    assert curl("02_add_domain.sh")[0] == 409
    assert curl("04_list_accounts.sh") == (200, {"data": {"items": [], "total": 0}})
    assert curl("05_create_account.sh")[0] == 200
    assert curl("05_create_account.sh")[0] == 409
    status, body = curl("06_get_account.sh")
    assert status == 200 and isinstance(body, dict)
    assert body["data"]["name"] == "agent@example.com" and body["data"]["emails"] == ["agent@example.com"]
    assert "SecurePassword123!" not in json.dumps(body) and "secrets" not in body["data"]
    assert curl("07_update_account.sh")[0] == 200
    status, body = curl("06_get_account.sh")
    assert isinstance(body, dict) and body["data"]["description"] == "Updated AI agent"
    assert curl("09_create_alias.sh")[0] == 200
    assert curl("10_create_forwarder.sh")[0] == 200
    assert curl("11_create_dkim.sh")[0] == 200
    status, body = curl("12_dns_records.sh")
    assert status == 200 and isinstance(body, dict)
    records = {(r["type"], r["name"]) for r in body["data"]}
    assert {("MX", "example.com."), ("TXT", "example.com."), ("TXT", "mailbux._domainkey.example.com."),
            ("TXT", "_dmarc.example.com.")} <= records
    status, body = curl("04_list_accounts.sh")
    assert isinstance(body, dict) and [i["name"] for i in body["data"]["items"]] == ["agent@example.com"]
    assert curl("08_delete_account.sh")[0] == 200
    assert curl("08_delete_account.sh")[0] == 404
    assert curl("03_delete_domain.sh")[0] == 200
    assert curl("01_list_domains.sh") == (200, {"data": {"items": [], "total": 0}})
    # A wrong token: 401, as the guide's error table says.
    status, _ = run_curl("01_list_domains.sh", base, "tk_not-a-real-token", tmp_path)
    assert status == 401


def python_examples(serve: tuple[ServeProcess, str, str], tmp_path: Path) -> None:
    proc, base, token = serve
    out = run_python("python_add_domain.py.txt", base, token, tmp_path)
    assert out.startswith("{'data': '")
    out = run_python("python_create_account.py.txt", base, token, tmp_path)
    assert out.startswith("Mailbox created: ai-support@example.com\nSMTP/IMAP password: ")

    out = run_python("workflow.py.txt", base, token, tmp_path)
    lines = out.splitlines()
    assert lines[:4] == ["Adding domain...", " Domain: 200", "Creating DKIM...", " DKIM: 200"]
    assert lines[4:6] == ["Fetching DNS records...", " Add these DNS records at your registrar:"]
    records = [line for line in lines if line.startswith(" {'type': ")]
    assert any("'name': 'mailbux._domainkey.mycompany.com.'" in r and "k=ed25519" in r for r in records)
    assert any("'type': 'MX'" in r for r in records)
    passwords = {}
    for name in ("info", "support", "ai-agent"):
        m = re.search(rf"^ {name}@mycompany\.com - 200 \(pass: (\S+)\)$", out, re.M)
        assert m, out
        passwords[name] = m.group(1)
    assert " Alias sales@ -> info@: 200" in lines
    assert lines[-1] == "Done! Configure DNS records, then your email is ready."
    # The mail host is ready at once: mail to the alias lands in info@'s mailbox, read over IMAP.
    with smtplib.SMTP("127.0.0.1", proc.ports["smtp"], timeout=30) as smtp:
        smtp.sendmail("customer@remote.test", ["sales@mycompany.com"],
                      b"From: customer@remote.test\r\nTo: sales@mycompany.com\r\nSubject: quote please\r\n\r\nHi\r\n")
    imap = imaplib.IMAP4("127.0.0.1", proc.ports["imap"], timeout=30)
    try:
        imap.login("info@mycompany.com", passwords["info"])
        typ, data = imap.select("INBOX")
        assert typ == "OK" and data[0] == b"1"
        typ, rows = imap.fetch("1", "(BODY.PEEK[])")
        assert typ == "OK" and isinstance(rows[0], tuple)
        assert email.message_from_bytes(rows[0][1])["Subject"] == "quote please"
    finally:
        imap.logout()

"""`mailwright serve` as a real process: crash safety, bad configuration, a second serve, workers."""

from __future__ import annotations

import imaplib
import os
import signal
import smtplib
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.server import ServeProcess, free_port


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mailwright", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def provision(base: str, key: str, domain: str, user: str, password: str) -> str:
    h = {"Authorization": f"Bearer {key}"}
    assert httpx.post(f"{base}/api/principal", headers=h, json={"name": domain, "type": "domain"}).status_code == 200
    addr = f"{user}@{domain}"
    r = httpx.post(f"{base}/api/principal", headers=h,
                   json={"name": addr, "type": "individual", "secrets": [password], "emails": [addr]})
    assert r.status_code == 200, r.text
    return addr


def admin_key_from(output: str) -> str:
    lines = output.splitlines()
    i = lines.index("Platform admin API key (shown once, store it now):")
    return lines[i + 1].strip()


def test_sigkill_after_250_keeps_the_message_once(tmp_path: Path, database_url: str) -> None:
    token = "test-admin-token-" + os.urandom(8).hex()
    proc = ServeProcess(tmp_path / "data", database_url, extra_env={"MAILWRIGHT_ADMIN_TOKEN": token}).start()
    base = f"http://127.0.0.1:{proc.ports['http']}"
    addr = provision(base, token, "crash.test", "dora", "a safe password")
    with smtplib.SMTP("127.0.0.1", proc.ports["smtp"], timeout=30) as smtp:
        smtp.ehlo("client.test")
        for i in range(5):
            code, _ = smtp.docmd("MAIL FROM:<x@remote.test>")
            assert code == 250
            assert smtp.docmd(f"RCPT TO:<{addr}>")[0] == 250
            assert smtp.docmd("DATA")[0] == 354
            smtp.send(f"Subject: crash {i}\r\nMessage-ID: <c{i}@remote.test>\r\n\r\nbody {i}\r\n.\r\n".encode())
            code, _ = smtp.getreply()
            assert code == 250
        proc.kill(signal.SIGKILL)  # right after the last 250, without QUIT
    again = ServeProcess(tmp_path / "data", database_url, extra_env={"MAILWRIGHT_ADMIN_TOKEN": token})
    again.ports = proc.ports
    again.start()
    try:
        imap = imaplib.IMAP4("127.0.0.1", again.ports["imap"], timeout=30)
        imap.login(addr, "a safe password")
        typ, data = imap.select("INBOX")
        assert data[0] == b"5"
        typ, data = imap.fetch("1:*", "(BODY.PEEK[])")
        # The MX prepends Received/Authentication-Results: pick the Subject field itself.
        subjects = sorted(next(ln for ln in d[1].split(b"\r\n") if ln.startswith(b"Subject:")).decode()
                          for d in data if isinstance(d, tuple))
        assert subjects == [f"Subject: crash {i}" for i in range(5)]
        imap.logout()
    finally:
        again.kill(signal.SIGTERM)


def test_first_start_prints_key_once_and_sigterm_exits_cleanly(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'data' / 'mailwright.db'}"
    proc = ServeProcess(tmp_path / "data", url).start()
    code = proc.kill(signal.SIGTERM)
    assert code == 0, proc.output
    key = admin_key_from(proc.output)
    assert key.startswith("sa_")
    assert "SMTP (MX)" in proc.output and "IMAPS" in proc.output and "POP3S" in proc.output
    second = ServeProcess(tmp_path / "data", url).start()
    try:
        r = httpx.get(f"http://127.0.0.1:{second.ports['http']}/api/principal",
                      headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 200
    finally:
        second.kill(signal.SIGTERM)
    assert "shown once" not in second.output  # not printed again


def test_second_serve_on_same_data_dir_or_port_fails_with_one_line(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'data' / 'mailwright.db'}"
    first = ServeProcess(tmp_path / "data", url).start()
    try:
        r = cli("serve", "--data-dir", str(tmp_path / "data"), "--http-port", str(free_port()))
        assert r.returncode != 0
        assert "already running" in r.stderr and "Traceback" not in r.stderr + r.stdout
        r = cli("serve", "--data-dir", str(tmp_path / "other"), "--http-port", str(first.ports["http"]),
                *[f"--{n}-port=0" for n in ("smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s")])
        assert r.returncode != 0
        assert "already in use" in r.stderr and "Traceback" not in r.stderr + r.stdout
        assert len(r.stderr.strip().splitlines()) == 1
    finally:
        first.kill(signal.SIGTERM)


@pytest.mark.parametrize(
    "args, expect",
    [
        (["--database-url", "mysql://nope/x"], "unsupported database"),
        (["--database-url", "not a url"], "invalid database URL"),
        (["--database-url", "postgresql+asyncpg://postgres@127.0.0.1:1/none"], "cannot use database"),
        (["--data-dir", "/proc/mailwright-cannot-write"], "not writable"),
    ],
)
def test_bad_configuration_is_one_line(tmp_path: Path, args: list[str], expect: str) -> None:
    ports = [f"--{n}-port=0" for n in ("smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s")]
    base = ["--data-dir", str(tmp_path / "d")] if "--data-dir" not in args else []
    r = cli("serve", *base, "--http-port", str(free_port()), *ports, *args)
    assert r.returncode != 0
    assert expect in r.stderr, r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    assert len(r.stderr.strip().splitlines()) == 1


def test_bad_event_loop_setting_is_one_line(tmp_path: Path) -> None:
    ports = [f"--{n}-port=0" for n in ("smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s")]
    r = cli("serve", "--data-dir", str(tmp_path / "d"), "--http-port", str(free_port()), *ports,
            env={"MAILWRIGHT_EVENT_LOOP": "bogus"})
    assert r.returncode != 0
    assert "bad configuration" in r.stderr and "event_loop" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr + r.stdout


def test_key_create_platform_cli(tmp_path: Path) -> None:
    data = tmp_path / "data"
    r = cli("key", "create", "--platform", "--data-dir", str(data))
    assert r.returncode == 0, r.stderr
    key = r.stdout.strip().splitlines()[-1]
    assert key.startswith("sa_")
    proc = ServeProcess(data, f"sqlite+aiosqlite:///{data / 'mailwright.db'}").start()
    try:
        r2 = httpx.get(f"http://127.0.0.1:{proc.ports['http']}/api/principal",
                       headers={"Authorization": f"Bearer {key}"})
        assert r2.status_code == 200
    finally:
        proc.kill(signal.SIGTERM)
    # a platform key existed already, so none was minted and printed at first start
    assert "shown once" not in proc.output


def test_workers_share_sockets_and_database(tmp_path: Path) -> None:
    data = tmp_path / "data"
    token = "tok-" + os.urandom(8).hex()
    proc = ServeProcess(data, f"sqlite+aiosqlite:///{data / 'mailwright.db'}",
                        extra_env={"MAILWRIGHT_ADMIN_TOKEN": token}, args=["--workers", "2"]).start()
    try:
        base = f"http://127.0.0.1:{proc.ports['http']}"
        addr = provision(base, token, "workers.test", "erin", "worker password")
        for i in range(10):
            with smtplib.SMTP("127.0.0.1", proc.ports["smtp"], timeout=30) as smtp:
                smtp.sendmail("x@remote.test", [addr], f"Subject: w{i}\r\n\r\nhi\r\n".encode())
        counts = set()
        for _ in range(6):
            imap = imaplib.IMAP4("127.0.0.1", proc.ports["imap"], timeout=30)
            imap.login(addr, "worker password")
            counts.add(imap.select("INBOX")[1][0])
            imap.logout()
        assert counts == {b"10"}
        out = subprocess.run(["pgrep", "-f", f"mailwright serve --data-dir {data}"], capture_output=True, text=True)
        assert len(out.stdout.split()) == 3  # the parent and two workers
    finally:
        code = proc.kill(signal.SIGTERM)
    assert code == 0


def test_unused_port_helper_is_free() -> None:
    p = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", p))

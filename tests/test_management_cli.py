"""The management CLI (`mailwright domain|account|alias|dkim|dns`) on a running server's store:
what it provisions works over IMAP/SMTP at once."""

from __future__ import annotations

import imaplib
import os
import smtplib
import subprocess
import sys

import dns.zone
import pytest

from tests.support.server import InProcessServer


def cli(srv: InProcessServer, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailwright", *args, "--data-dir", str(srv.settings.data_dir),
         "--database-url", srv.settings.database_url],
        capture_output=True, text=True, timeout=120, input=input,
        env={**os.environ, "MAILWRIGHT_HOSTNAME": srv.settings.hostname})


def login_ok(srv: InProcessServer, user: str, password: str) -> bool:
    imap = imaplib.IMAP4("127.0.0.1", srv.ports["imap"], timeout=30)
    try:
        imap.login(user, password)
        return True
    except imaplib.IMAP4.error:
        return False
    finally:
        imap.logout()


# The CLI runs the same services as the API (tested on both databases); each CLI call is a new
# Python process, so this test runs on SQLite only to keep the suite fast.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_cli_provisions_what_the_mail_flow_uses(server: InProcessServer) -> None:
    r = cli(server, "domain", "add", "CLI.Example")
    assert r.returncode == 0 and r.stdout.strip() == "cli.example", r.stderr
    r = cli(server, "domain", "add", "cli.example")
    assert r.returncode == 1 and "already exists" in r.stderr and "Traceback" not in r.stderr
    r = cli(server, "account", "add", "ops@cli.example", "--email", "root@cli.example")
    assert r.returncode == 0, r.stderr
    password = r.stdout.split("password: ")[1].strip()
    assert login_ok(server, "ops@cli.example", password)
    r = cli(server, "alias", "add", "team@cli.example", "ops@cli.example")
    assert r.returncode == 0, r.stderr
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=30) as smtp:
        smtp.sendmail("x@remote.test", ["team@cli.example", "root@cli.example"], b"Subject: hi\r\n\r\nhi\r\n")
    r = cli(server, "account", "passwd", "ops@cli.example", "--password", "Brand-new-password")
    assert r.returncode == 0, r.stderr
    assert not login_ok(server, "ops@cli.example", password)
    imap = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=30)
    imap.login("ops@cli.example", "Brand-new-password")
    assert imap.select("INBOX")[1][0] == b"1"  # one copy for the two addresses of one account
    imap.logout()
    r = cli(server, "dkim", "create", "cli.example", "--selector", "s1", "--algorithm", "ed25519-sha256")
    assert r.returncode == 0 and "s1._domainkey.cli.example." in r.stdout and "k=ed25519" in r.stdout
    r = cli(server, "dns", "cli.example")
    assert r.returncode == 0, r.stderr
    zone = dns.zone.from_text("@ 3600 IN SOA ns. h. 1 2 3 4 5\n@ 3600 IN NS ns.\n" + r.stdout,
                              origin="cli.example.", relativize=False)
    assert zone.find_rdataset("s1._domainkey.cli.example.", "TXT")
    assert str(next(iter(zone.find_rdataset("cli.example.", "MX"))).exchange) == "mx.test.local."
    r = cli(server, "account", "list")
    assert r.returncode == 0 and r.stdout.startswith("ops@cli.example\tops@cli.example,root@cli.example\t")
    r = cli(server, "domain", "delete", "cli.example", input="n\n")
    assert r.returncode == 1
    r = cli(server, "domain", "delete", "cli.example", "--yes")
    assert r.returncode == 0, r.stderr
    assert not login_ok(server, "ops@cli.example", "Brand-new-password")
    assert cli(server, "domain", "list").stdout == ""
    assert cli(server, "dns", "cli.example").returncode == 1

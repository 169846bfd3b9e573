"""Real IMAP (and POP3) clients against a whole in-process Mailwright node.

- Python's `imaplib` and `imapclient`: scripted scenarios (mailboxes, APPEND, FETCH, STORE,
  SEARCH, COPY/MOVE, EXPUNGE, IDLE, RENAME INBOX), on SQLite and PostgreSQL.
- `mbsync` (isync): two-way sync of new messages, flag changes and deletions, on both databases.
- `offlineimap3`: sync down, flag change up (SQLite: it is slow to start).
- `fetchmail`: fetches over IMAP, and over POP3 once `mailwright.pop3` exists (SQLite).

Clients talk plain IMAP on loopback (Mailwright allows plaintext LOGIN on loopback) except where
noted. A missing client binary skips the test with a reason, or fails it under CI=true.
"""

from __future__ import annotations

import email
import imaplib
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.server import InProcessServer

PASSWORD = "client-password-1"
DATA = Path(__file__).parent / "data" / "imap_sessions" / "messages"


def need(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        why = f"{binary} is not installed (scripts/debian-packages.txt)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(why)
        pytest.skip(why)
    return path


def account(srv: InProcessServer, user: str = "alice") -> tuple[str, str]:
    """A mailbox user@clients.test; returns (address, principal id)."""
    addr = f"{user}@clients.test"
    with srv.api() as api:
        r = api.post("/api/principal", json={"name": "clients.test", "type": "domain"})
        assert r.status_code in (200, 409) or "exist" in r.text.lower(), r.text
        r = api.post("/api/principal", json={"name": addr, "type": "individual", "secrets": [PASSWORD],
                                             "emails": [addr]})
        assert r.status_code == 200, r.text
        return addr, str(r.json()["data"])


def deliver(srv: InProcessServer, pid: str, raws: list[bytes], mailbox: str = "INBOX", flags: str = "") -> None:
    """Setup through the store's service (what the MX does after accepting a message)."""
    from mailwright.mailstore.messages import Target
    from mailwright.mailstore.messages import deliver as store

    async def go(svc: object) -> None:
        for raw in raws:
            await store(svc, raw, [Target(pid, mailbox, flags)])  # type: ignore[arg-type]

    srv.run(go)  # type: ignore[arg-type]


def msg(n: int, subject: str | None = None) -> bytes:
    return (f"From: Sender {n} <sender{n}@remote.test>\r\nTo: alice@clients.test\r\n"
            f"Subject: {subject or f'message number {n}'}\r\nDate: Mon, 2 Jan 2023 10:0{n % 10}:00 +0000\r\n"
            f"Message-ID: <m{n}-{time.time_ns()}@remote.test>\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\n\r\nBody of message {n}.\r\n").encode()


def imap(srv: InProcessServer, addr: str) -> imaplib.IMAP4:
    c = imaplib.IMAP4("127.0.0.1", srv.ports["imap"], timeout=30)
    c.login(addr, PASSWORD)
    return c


def server_view(srv: InProcessServer, addr: str, mailbox: str = "INBOX") -> dict[str, set[str]]:
    """Subject -> flags of every message in `mailbox`, as an IMAP client sees it."""
    c = imap(srv, addr)
    try:
        typ, _ = c.select(mailbox, readonly=True)
        assert typ == "OK"
        typ, data = c.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        out: dict[str, set[str]] = {}
        if data and data[0] is not None:
            for item in data:
                if isinstance(item, tuple):
                    flags = imaplib.ParseFlags(item[0])
                    subj = email.message_from_bytes(item[1])["Subject"]
                    out[str(subj)] = {f.decode() for f in flags} - {"\\Recent"}
        return out
    finally:
        c.logout()


# --------------------------------------------------------------------------------------- imaplib
def test_imaplib_scenario(server: InProcessServer) -> None:
    addr, pid = account(server)
    deliver(server, pid, [msg(1), msg(2), msg(3, "find the quokka")])
    c = imap(server, addr)
    data: Any
    try:
        typ, caps = c.capability()
        assert typ == "OK" and b"IMAP4rev1" in caps[0]
        typ, boxes = c.list()
        names = {b.split(b' "/" ')[-1].strip(b'"') for b in boxes if isinstance(b, bytes)}
        assert {b"INBOX", b"Drafts", b"Sent", b"Trash", b"Junk", b"Archive"} <= names, boxes
        typ, data = c.select("INBOX")
        assert typ == "OK" and data[0] == b"3"
        typ, data = c.search(None, "SUBJECT", "quokka")
        assert typ == "OK" and data[0] == b"3"
        typ, data = c.fetch("1", "(RFC822.SIZE ENVELOPE BODYSTRUCTURE BODY.PEEK[TEXT])")
        assert typ == "OK" and b"Body of message 1." in data[0][1]
        typ, _ = c.append("INBOX", "(\\Flagged)", imaplib.Time2Internaldate(time.time()), msg(4, "appended"))
        assert typ == "OK"
        c.noop()
        typ, data = c.search(None, "FLAGGED")
        assert data[0] == b"4"
        typ, _ = c.store("1:2", "+FLAGS", "(\\Seen)")
        assert typ == "OK"
        typ, data = c.search(None, "UNSEEN")
        assert data[0].split() == [b"3", b"4"]
        typ, data = c.copy("1", "Archive")
        assert typ == "OK"
        typ, _ = c.store("2", "+FLAGS", "(\\Deleted)")
        typ, data = c.expunge()
        assert typ == "OK" and data == [b"2"]
        typ, data = c.status("Archive", "(MESSAGES UNSEEN)")
        assert typ == "OK" and b"MESSAGES 1" in data[0] and b"UNSEEN 0" in data[0]
        typ, _ = c.create("Projects/2024")
        assert typ == "OK"
        typ, _ = c.rename("Projects/2024", "Projects/2025")
        assert typ == "OK"
        # imaplib sends its arguments as given: the pattern goes as the atom Projects/* (RFC 3501 9:
        # list-mailbox = 1*list-char, wildcards included), the empty reference must be passed as '""'
        typ, data = c.list('""', "Projects/*")
        assert typ == "OK" and any(b"Projects/2025" in d for d in data if isinstance(d, bytes)), data
        # c.list("", ...) would send "LIST  Projects/*": an empty argument, BAD (Dovecot: BAD too)
        with pytest.raises(imaplib.IMAP4.error, match="BAD"):
            c.list("", "Projects/*")
        typ, _ = c.delete("Projects/2025")
        assert typ == "OK"
        typ, _ = c.select("Nonexistent")
        assert typ == "NO"
    finally:
        c.logout()


def test_imaplib_rename_inbox(server: InProcessServer) -> None:
    """RFC 3501 6.3.5: RENAME INBOX moves all its messages to the new name; INBOX stays, empty.

    (Not in the differential corpus: Dovecot's Maildir refuses RENAME INBOX.)"""
    addr, pid = account(server)
    deliver(server, pid, [msg(1), msg(2)])
    c = imap(server, addr)
    try:
        typ, _ = c.rename("INBOX", "Old-Inbox")
        assert typ == "OK"
        assert c.status("INBOX", "(MESSAGES)")[1][0].endswith(b"(MESSAGES 0)")
        assert c.status("Old-Inbox", "(MESSAGES)")[1][0].endswith(b"(MESSAGES 2)")
    finally:
        c.logout()


def test_imaplib_starttls(server: InProcessServer) -> None:
    """STARTTLS with the node's (self-signed) certificate, then LOGIN over TLS."""
    import ssl

    addr, _ = account(server)
    c = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=30)
    try:
        assert "STARTTLS" in c.capabilities
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        typ, _ = c.starttls(ctx)
        assert typ == "OK"
        typ, _ = c.login(addr, PASSWORD)
        assert typ == "OK"
    finally:
        c.logout()


# ------------------------------------------------------------------------------------ imapclient
def test_imapclient_scenario(server: InProcessServer) -> None:
    from imapclient import IMAPClient

    addr, pid = account(server)
    raws = [(DATA / name).read_bytes() for name in ("m01_thread_root.eml", "m05_big_attachment.eml",
                                                    "m07_deep_nesting.eml")]
    deliver(server, pid, raws)
    with IMAPClient("127.0.0.1", port=server.ports["imap"], ssl=False, timeout=30) as c:
        c.login(addr, PASSWORD)
        assert b"MOVE" in c.capabilities() and b"IDLE" in c.capabilities()
        info = c.select_folder("INBOX")
        assert info[b"EXISTS"] == 3
        uids = c.search(["ALL"])
        assert len(uids) == 3
        data = c.fetch(uids, ["ENVELOPE", "BODYSTRUCTURE", "RFC822.SIZE", "BODY.PEEK[]", "FLAGS"])
        for uid, raw in zip(uids, raws, strict=True):
            assert data[uid][b"BODY[]"] == raw
            assert data[uid][b"RFC822.SIZE"] == len(raw)
        env = data[uids[0]][b"ENVELOPE"]
        assert env.subject == b"Planning the offsite"
        assert data[uids[2]][b"BODYSTRUCTURE"].is_multipart
        part = c.fetch([uids[2]], ["BODY.PEEK[1.2.2]"])[uids[2]][b"BODY[1.2.2]"]
        assert part.strip().startswith(b"iVBORw0KGgo")
        c.add_flags([uids[0]], [b"\\Flagged", b"$Work"])
        assert set(c.get_flags([uids[0]])[uids[0]]) >= {b"\\Flagged", b"$Work"}
        assert c.search(["KEYWORD", "$Work"]) == [uids[0]]
        c.move([uids[1]], "Archive")
        assert len(c.search(["ALL"])) == 2
        st = c.folder_status("Archive", ["MESSAGES", "UIDNEXT"])
        assert st[b"MESSAGES"] == 1

        # IDLE: another client's APPEND is announced within a second or two
        other = imap(server, addr)
        try:
            c.idle()
            t = threading.Timer(0.3, lambda: other.append("INBOX", None, None, msg(9, "during idle")))
            t.start()
            responses = c.idle_check(timeout=5)
            t.join()
            c.idle_done()
        finally:
            other.logout()
        assert any(r[1:2] == (b"EXISTS",) for r in responses), responses
        c.delete_messages([uids[0]])
        c.expunge()
        assert uids[0] not in c.search(["ALL"])
        c.create_folder("Reports")
        c.rename_folder("Reports", "Reports-2023")
        assert c.folder_exists("Reports-2023") and not c.folder_exists("Reports")
        c.delete_folder("Reports-2023")
        c.logout()


# ---------------------------------------------------------------------------------------- mbsync
def _maildir_files(box: Path) -> list[Path]:
    return sorted([*box.glob("cur/*"), *box.glob("new/*")])


def _subject(p: Path) -> str:
    return str(email.message_from_bytes(p.read_bytes())["Subject"])


def _flags(p: Path) -> str:
    return p.name.split(":2,", 1)[1] if ":2," in p.name else ""


def _run(cmd: list[str], cwd: Path | None = None, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{cmd[0]} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def test_mbsync_two_way(server: InProcessServer, tmp_path: Path) -> None:
    mbsync = need("mbsync")
    addr, pid = account(server)
    deliver(server, pid, [msg(1, "one"), msg(2, "two"), msg(3, "three")])
    local = tmp_path / "mail"
    local.mkdir()
    rc = tmp_path / "mbsyncrc"
    rc.write_text(f"""IMAPAccount mw
Host 127.0.0.1
Port {server.ports['imap']}
User {addr}
Pass {PASSWORD}
SSLType None
AuthMechs LOGIN

IMAPStore mw-remote
Account mw

MaildirStore mw-local
Path {local}/
Inbox {local}/INBOX
SubFolders Verbatim

Channel mw
Far :mw-remote:
Near :mw-local:
Patterns *
Create Both
Expunge Both
SyncState *
Sync All
""")
    sync = [mbsync, "-c", str(rc), "-a"]
    _run(sync)
    files = _maildir_files(local / "INBOX")
    assert sorted(_subject(p) for p in files) == ["one", "three", "two"]
    assert {"Drafts", "Sent", "Trash", "Junk", "Archive"} <= {p.name for p in local.iterdir()}

    # local changes: read "one", delete "two", a new message in the local INBOX
    by_subject = {_subject(p): p for p in files}
    one, two = by_subject["one"], by_subject["two"]
    one.rename(local / "INBOX" / "cur" / (one.name.split(":2,")[0] + ":2,S"))
    two.rename(local / "INBOX" / "cur" / (two.name.split(":2,")[0] + ":2," + "".join(sorted(_flags(two) + "T"))))
    (local / "INBOX" / "new" / "1700000000.local1.host").write_bytes(msg(4, "written locally"))
    _run(sync)
    view = server_view(server, addr)
    assert set(view) == {"one", "three", "written locally"}, view
    assert "\\Seen" in view["one"] and "\\Seen" not in view["three"]

    # server-side changes: flag "three", expunge "one", new mail
    c = imap(server, addr)
    try:
        c.select("INBOX")
        typ, data = c.search(None, "SUBJECT", "three")
        c.store(data[0].decode(), "+FLAGS", "(\\Flagged)")
        typ, data = c.search(None, "SUBJECT", "one")
        c.store(data[0].decode(), "+FLAGS", "(\\Deleted)")
        c.expunge()
    finally:
        c.logout()
    deliver(server, pid, [msg(5, "five")])
    _run(sync)
    now = {_subject(p): _flags(p) for p in _maildir_files(local / "INBOX")}
    assert set(now) == {"three", "written locally", "five"}, now
    assert "F" in now["three"]
    # a second run with nothing to do changes nothing
    _run(sync)
    assert {_subject(p): _flags(p) for p in _maildir_files(local / "INBOX")} == now


# ----------------------------------------------------------------------------------- offlineimap
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_offlineimap_sync(server: InProcessServer, tmp_path: Path) -> None:
    offlineimap = need("offlineimap")
    addr, pid = account(server)
    deliver(server, pid, [msg(1, "alpha"), msg(2, "beta")])
    deliver(server, pid, [msg(3, "archived")], mailbox="Archive")
    local = tmp_path / "mail"
    rc = tmp_path / "offlineimaprc"
    rc.write_text(f"""[general]
accounts = mw
metadata = {tmp_path / 'meta'}

[Account mw]
localrepository = local
remoterepository = remote

[Repository local]
type = Maildir
localfolders = {local}

[Repository remote]
type = IMAP
remotehost = 127.0.0.1
remoteport = {server.ports['imap']}
ssl = no
starttls = no
remoteuser = {addr}
remotepass = {PASSWORD}
maxconnections = 1
""")
    cmd = [offlineimap, "-c", str(rc), "-o", "-u", "basic"]
    _run(cmd, timeout=120)
    inbox = _maildir_files(local / "INBOX")
    assert sorted(_subject(p) for p in inbox) == ["alpha", "beta"]
    assert [_subject(p) for p in _maildir_files(local / "Archive")] == ["archived"]
    # mark "alpha" read locally and push it up
    alpha = next(p for p in inbox if _subject(p) == "alpha")
    alpha.rename(alpha.parent.parent / "cur" / (alpha.name.split(":2,")[0] + ":2,S"))
    _run(cmd, timeout=120)
    view = server_view(server, addr)
    assert "\\Seen" in view["alpha"] and "\\Seen" not in view["beta"], view


# -------------------------------------------------------------------------------------- fetchmail
def _fetchmail(tmp_path: Path, port: int, proto: str, addr: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    fetchmail = need("fetchmail")
    out = tmp_path / f"{proto}.mbox"
    rc = tmp_path / f"fetchmailrc-{proto}"
    rc.write_text(f"""set no syslog
poll 127.0.0.1 service {port} protocol {proto} timeout 30
  user "{addr}" password "{PASSWORD}" is "nobody" here
  sslproto '' keep fetchall
  mda "/bin/sh -c 'cat >> {out}; echo >> {out}'"
""")
    rc.chmod(0o600)
    env = {**os.environ, "FETCHMAILHOME": str(tmp_path), "HOME": str(tmp_path)}
    r = subprocess.run([fetchmail, "-f", str(rc), "-v", "--nodetach"], capture_output=True, text=True,
                       timeout=90, env=env)
    return r, out


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_fetchmail_imap(server: InProcessServer, tmp_path: Path) -> None:
    addr, pid = account(server)
    deliver(server, pid, [msg(1, "fetch me"), msg(2, "and me")])
    r, out = _fetchmail(tmp_path, server.ports["imap"], "IMAP", addr)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    text = out.read_text()
    assert "Subject: fetch me" in text and "Subject: and me" in text
    assert "2 messages" in r.stdout + r.stderr
    # `keep`: still on the server, now \Seen
    view = server_view(server, addr)
    assert all("\\Seen" in f for f in view.values()) and len(view) == 2, view


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_fetchmail_pop3(server: InProcessServer, tmp_path: Path) -> None:
    try:
        from mailwright.pop3.server import start_pop3  # noqa: F401
    except ImportError:
        pytest.skip("mailwright.pop3 is not there yet (POP3 is built by another helper)")
    addr, pid = account(server)
    deliver(server, pid, [msg(1, "pop one"), msg(2, "pop two")])
    r, out = _fetchmail(tmp_path, server.ports["pop3"], "POP3", addr)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    text = out.read_text()
    assert "Subject: pop one" in text and "Subject: pop two" in text
    assert len(server_view(server, addr)) == 2  # keep


# ------------------------------------------------------------------------------------------ IDLE
def test_idle_hears_smtp_delivery_within_a_second(server: InProcessServer) -> None:
    """Issue 5: IDLE announces new mail delivered by any path (here: the MX, via smtplib) within 1 s."""
    import smtplib

    from tests.support.imap_session import Connection

    addr, _ = account(server)
    c = Connection(server.ports["imap"])
    try:
        assert c.read_response() is not None
        c.send(f'L LOGIN "{addr}" "{PASSWORD}"\r\nS SELECT INBOX\r\nI IDLE\r\n'.encode())
        while not (c.read_response() or b"+").startswith(b"+"):
            pass
        t0 = time.monotonic()
        with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=30) as s:
            assert s.sendmail("bob@remote.test", [addr], msg(1, "while idling")) == {}
        sent = time.monotonic()
        line = c.read_response(timeout=5)
        assert line == b"* 1 EXISTS\r\n", line
        assert time.monotonic() - sent < 1.0, f"announced {time.monotonic() - sent:.2f}s after the 250"
        c.send(b"DONE\r\n")
        assert (c.read_response() or b"").startswith(b"I OK")
        assert t0 <= sent
    finally:
        c.close()

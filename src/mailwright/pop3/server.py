"""POP3: AUTHORIZATION -> TRANSACTION -> UPDATE over one account's INBOX.

Decisions (as Dovecot's defaults): UIDL is %08Xu%08Xv (uid + uidvalidity, stable across
sessions and shared with IMAP's view); RETR marks a message \\Seen at QUIT; DELE takes effect
only in the UPDATE state (QUIT), so a dropped connection deletes nothing; the maildrop is leased
exclusively (-ERR [IN-USE] for a second session). Plain-text USER/PASS and AUTH are refused
before TLS except from loopback when `allow_plaintext_auth_on_loopback` is set.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import socket
import ssl
import uuid

from mailwright.directory import logins
from mailwright.mailstore import maildrop, reads
from mailwright.services import Services

log = logging.getLogger(__name__)
MAX_LINE = 1024  # RFC 2449 allows 255 octets; be lenient, but bounded
IDLE_TIMEOUT = 600.0  # RFC 1939: at least 10 minutes
MAX_ERRORS = 20


class Pop3Session:
    def __init__(self, svc: Services, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 tls: ssl.SSLContext | None, implicit_tls: bool) -> None:
        self.svc, self.reader, self.writer, self.tls = svc, reader, writer, tls
        self.secure = implicit_tls
        peer = writer.get_extra_info("peername")
        self.peer_ip: str | None = peer[0] if peer else None
        self.user: str | None = None
        self.account: logins.Account | None = None
        self.owner = uuid.uuid4().hex
        self.released = False  # the maildrop lease was given back (QUIT, or the session ended)
        self.mailbox_id = 0
        self.items: list[maildrop.DropItem] = []
        self.deleted: set[int] = set()  # 1-based message numbers
        self.retrieved: set[int] = set()
        self.errors = 0

    # -- plumbing -------------------------------------------------------------------------
    async def send(self, data: str | bytes) -> None:
        self.writer.write(data.encode() if isinstance(data, str) else data)
        await self.writer.drain()

    async def ok(self, text: str = "") -> None:
        await self.send(f"+OK {text}\r\n" if text else "+OK\r\n")

    async def err(self, text: str) -> None:
        self.errors += 1
        await self.send(f"-ERR {text}\r\n")

    def plaintext_allowed(self) -> bool:
        loopback = self.peer_ip in ("127.0.0.1", "::1")
        return self.secure or (loopback and self.svc.settings.allow_plaintext_auth_on_loopback)

    async def readline(self) -> str | None:
        try:
            line = await asyncio.wait_for(self.reader.readuntil(b"\n"), timeout=IDLE_TIMEOUT)
        except asyncio.LimitOverrunError:
            await self.send("-ERR line too long\r\n")
            return None
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            return None
        return line.decode("utf-8", "replace").rstrip("\r\n")

    # -- the session ------------------------------------------------------------------------
    async def run(self) -> None:
        await self.ok(f"Mailwright POP3 ready <{self.owner}@{self.svc.settings.hostname}>")
        try:
            while self.errors < MAX_ERRORS:
                line = await self.readline()
                if line is None:
                    return
                cmd, _, arg = line.partition(" ")
                if not await self.dispatch(cmd.upper(), arg):
                    return
            await self.send("-ERR too many errors, closing\r\n")
        finally:
            await self.release()

    async def release(self) -> None:
        """Give the maildrop lease back (once)."""
        if self.account is not None and not self.released:
            self.released = True
            await maildrop.release(self.svc, self.account.principal_id, self.owner)

    async def dispatch(self, cmd: str, arg: str) -> bool:
        if cmd == "QUIT":
            await self.quit()
            return False
        if cmd == "CAPA":
            await self.capa()
        elif cmd == "NOOP" and self.account:
            await self.ok()
        elif self.account is None:
            await self.authorization(cmd, arg)
        else:
            await self.transaction(cmd, arg)
        return True

    async def capa(self) -> None:
        caps = ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "USER" if self.plaintext_allowed()
                else None, "SASL PLAIN" if self.plaintext_allowed() else None,
                "STLS" if self.tls is not None and not self.secure and self.account is None else None,
                "EXPIRE NEVER", "LOGIN-DELAY 0", "IMPLEMENTATION Mailwright"]
        await self.send("+OK Capability list follows\r\n" + "".join(f"{c}\r\n" for c in caps if c) + ".\r\n")

    async def authorization(self, cmd: str, arg: str) -> None:
        if cmd == "STLS":
            if self.tls is None or self.secure:
                await self.err("STLS not available")
                return
            await self.ok("Begin TLS negotiation")
            await self.writer.start_tls(self.tls)
            self.secure = True
            self.user = None
            return
        if cmd in ("USER", "PASS", "AUTH") and not self.plaintext_allowed():
            await self.err("[AUTH] Plain-text authentication is only allowed over TLS (use STLS)")
            return
        if cmd == "USER":
            if not arg:
                await self.err("USER needs a name")
                return
            self.user = arg.strip()
            await self.ok()
        elif cmd == "PASS":
            if self.user is None:
                await self.err("USER first")
                return
            await self.authenticate(self.user, arg)
        elif cmd == "AUTH":
            await self.auth_plain(arg)
        else:
            await self.err("unknown command or not allowed before login")

    async def auth_plain(self, arg: str) -> None:
        mech, _, initial = arg.partition(" ")
        if mech.upper() != "PLAIN":
            if not mech:  # RFC 1734 AUTH with no argument lists mechanisms
                await self.send("+OK\r\nPLAIN\r\n.\r\n")
                return
            await self.err("unsupported mechanism")
            return
        if not initial:
            await self.send("+ \r\n")
            line = await self.readline()
            if line is None:
                return
            initial = line
        if initial == "*":
            await self.err("authentication cancelled")
            return
        try:
            parts = base64.b64decode(initial, validate=True).split(b"\0")
            _authz, authc, password = (p.decode() for p in parts)
        except (binascii.Error, ValueError, UnicodeDecodeError):
            await self.err("malformed AUTH PLAIN response")
            return
        await self.authenticate(authc, password)

    async def authenticate(self, user: str, password: str) -> None:
        throttle = self.svc.login_throttle
        if throttle.blocked(self.peer_ip, user):
            await self.err("[SYS/TEMP] Too many failed logins, try again later")
            return
        account = await logins.login(self.svc.db, user, password)
        if account is None:
            throttle.failure(self.peer_ip, user)
            await asyncio.sleep(0.5)
            self.user = None
            await self.err("[AUTH] Authentication failed")
            return
        throttle.success(self.peer_ip, user)
        if not await maildrop.acquire(self.svc, account.principal_id, self.owner):
            await self.err("[IN-USE] Mailbox is locked by another POP3 session")
            return
        self.account = account
        self.mailbox_id, self.items = await maildrop.snapshot(self.svc, account.principal_id)
        await self.ok(f"Logged in, {len(self.items)} messages")

    def message(self, arg: str) -> tuple[int, maildrop.DropItem] | None:
        try:
            n = int(arg.split()[0])
        except (ValueError, IndexError):
            return None
        if 1 <= n <= len(self.items) and n not in self.deleted:
            return n, self.items[n - 1]
        return None

    async def transaction(self, cmd: str, arg: str) -> None:
        live = [(n, it) for n, it in enumerate(self.items, 1) if n not in self.deleted]
        if cmd == "STAT":
            await self.ok(f"{len(live)} {sum(it.size for _, it in live)}")
        elif cmd in ("LIST", "UIDL"):
            field = (lambda it: str(it.size)) if cmd == "LIST" else (lambda it: it.uidl)
            if arg.strip():
                found = self.message(arg)
                if found is None:
                    await self.err("no such message")
                else:
                    await self.ok(f"{found[0]} {field(found[1])}")
                return
            body = "".join(f"{n} {field(it)}\r\n" for n, it in live)
            await self.send(f"+OK {len(live)} messages\r\n{body}.\r\n")
        elif cmd in ("RETR", "TOP"):
            await self.retrieve(cmd, arg)
        elif cmd == "DELE":
            found = self.message(arg)
            if found is None:
                await self.err("no such message")
            else:
                self.deleted.add(found[0])
                await self.ok(f"message {found[0]} deleted")
        elif cmd == "RSET":
            self.deleted.clear()
            await self.ok(f"{len(self.items)} messages")
        elif cmd in ("USER", "PASS", "AUTH", "STLS"):
            await self.err("already authenticated")
        else:
            await self.err("unknown command")

    async def retrieve(self, cmd: str, arg: str) -> None:
        found = self.message(arg)
        lines: int | None = None
        if cmd == "TOP":
            parts = arg.split()
            try:
                lines = int(parts[1])
                if lines < 0:
                    raise ValueError
            except (ValueError, IndexError):
                await self.err("TOP needs a message number and a line count")
                return
        if found is None:
            await self.err("no such message")
            return
        n, item = found
        try:
            raw = await reads.raw_message(self.svc, item.message)
        except FileNotFoundError:
            await self.err("[SYS/TEMP] message temporarily unavailable")
            return
        if lines is not None:
            head, sep, body = raw.partition(b"\r\n\r\n")
            raw = head + sep + b"".join(body.splitlines(keepends=True)[:lines]) if sep else raw
        else:
            self.retrieved.add(n)
        await self.send(f"+OK {item.size} octets\r\n".encode() + dot_stuff(raw) + b".\r\n")

    async def quit(self) -> None:
        if self.account is None:
            await self.ok("bye")
            return
        try:
            gone = await maildrop.commit(
                self.svc, self.account.principal_id, self.mailbox_id,
                [self.items[n - 1].uid for n in sorted(self.retrieved - self.deleted)],
                [self.items[n - 1].uid for n in sorted(self.deleted)],
            )
        except Exception:  # noqa: BLE001 - RFC 1939: report, keep the messages
            log.exception("POP3 update failed")
            await self.send("-ERR [SYS/TEMP] some deleted messages not removed\r\n")
            return
        # The lease goes before the +OK: a client that logs in again the moment it reads it
        # (fetchmail polling, a test) must not find its own finished session holding the lock.
        await self.release()
        await self.ok(f"bye, {gone} messages deleted")


def dot_stuff(raw: bytes) -> bytes:
    """Byte-stuff lines starting with '.' and make sure the data ends with CRLF (RFC 1939 §3)."""
    if raw.startswith(b"."):
        raw = b"." + raw
    raw = raw.replace(b"\r\n.", b"\r\n..")
    if not raw.endswith(b"\r\n"):
        raw += b"\r\n"
    return raw


async def start_pop3(svc: Services, sock: socket.socket, tls: ssl.SSLContext | None, *, implicit_tls: bool
                     ) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await Pop3Session(svc, reader, writer, tls, implicit_tls).run()
        except Exception:  # noqa: BLE001 - one broken session must never take the server down
            log.exception("POP3 session failed")
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    return await asyncio.start_server(handle, sock=sock, ssl=tls if implicit_tls else None, limit=MAX_LINE)

"""A minimal IMAP server: CAPABILITY, STARTTLS, LOGIN, SELECT/EXAMINE, FETCH, NOOP, LOGOUT.

This is the foundation's thin slice (the first mail, end to end); the full IMAP4rev2 server
replaces it. Parsing is deliberately strict and every error is a tagged BAD/NO, never a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import ssl

from mailwright.directory import logins
from mailwright.mailstore import reads
from mailwright.services import Services

log = logging.getLogger(__name__)
MAX_LINE = 65536
_ATOM_OR_QUOTED = re.compile(r'\s*(?:"((?:[^"\\]|\\.)*)"|(\S+))')


def _args(text: str) -> list[str]:
    out = []
    pos = 0
    while pos < len(text):
        m = _ATOM_OR_QUOTED.match(text, pos)
        if not m or m.end() == pos:
            break
        out.append(re.sub(r"\\(.)", r"\1", m.group(1)) if m.group(1) is not None else m.group(2))
        pos = m.end()
    return out


def _seqset(spec: str, maximum: int) -> set[int]:
    result: set[int] = set()
    for part in spec.split(","):
        lo_s, _, hi_s = part.partition(":")
        lo = maximum if lo_s == "*" else int(lo_s)
        hi = lo if not hi_s else (maximum if hi_s == "*" else int(hi_s))
        if lo > hi:
            lo, hi = hi, lo
        result.update(range(lo, min(hi, maximum) + 1))
    return result


class ImapSession:
    def __init__(self, svc: Services, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 tls: ssl.SSLContext | None, implicit_tls: bool) -> None:
        self.svc, self.reader, self.writer, self.tls = svc, reader, writer, tls
        self.secure = implicit_tls
        self.account: logins.Account | None = None
        self.selected: list[reads.EntryView] | None = None
        peer = writer.get_extra_info("peername")
        self.peer_ip = peer[0] if peer else None

    def caps(self) -> str:
        caps = ["IMAP4rev1", "IMAP4rev2", "AUTH=PLAIN"]
        if not self.secure and self.tls is not None:
            caps.append("STARTTLS")
        return " ".join(caps)

    async def send(self, line: str | bytes) -> None:
        self.writer.write(line.encode() if isinstance(line, str) else line)
        await self.writer.drain()

    async def run(self) -> None:
        await self.send(f"* OK [CAPABILITY {self.caps()}] Mailwright IMAP ready\r\n")
        while True:
            try:
                line = await asyncio.wait_for(self.reader.readuntil(b"\n"), timeout=1800)
            except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                return
            except asyncio.LimitOverrunError:
                await self.send("* BAD line too long\r\n")
                return
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            tag, _, rest = text.partition(" ")
            cmd, _, arg = rest.partition(" ")
            if not tag or not cmd:
                await self.send("* BAD missing tag or command\r\n")
                continue
            try:
                if not await self.dispatch(tag, cmd.upper(), arg):
                    return
            except (ValueError, IndexError):
                await self.send(f"{tag} BAD invalid arguments\r\n")

    async def dispatch(self, tag: str, cmd: str, arg: str) -> bool:
        if cmd == "CAPABILITY":
            await self.send(f"* CAPABILITY {self.caps()}\r\n{tag} OK CAPABILITY completed\r\n")
        elif cmd == "NOOP":
            await self.send(f"{tag} OK NOOP completed\r\n")
        elif cmd == "LOGOUT":
            await self.send(f"* BYE logging out\r\n{tag} OK LOGOUT completed\r\n")
            return False
        elif cmd == "STARTTLS" and self.tls is not None and not self.secure:
            await self.send(f"{tag} OK Begin TLS negotiation now\r\n")
            await self.writer.start_tls(self.tls)
            self.secure = True
        elif cmd == "LOGIN":
            await self.login(tag, arg)
        elif cmd in ("SELECT", "EXAMINE") and self.account:
            await self.select(tag, cmd, arg)
        elif cmd == "FETCH" and self.selected is not None:
            await self.fetch(tag, arg, by_uid=False)
        elif cmd == "UID" and self.selected is not None and arg.upper().startswith("FETCH "):
            await self.fetch(tag, arg[6:], by_uid=True)
        else:
            await self.send(f"{tag} BAD command unknown or not allowed now\r\n")
        return True

    async def login(self, tag: str, arg: str) -> None:
        loopback = self.peer_ip in ("127.0.0.1", "::1") and self.svc.settings.allow_plaintext_auth_on_loopback
        if not self.secure and not loopback:
            await self.send(f"{tag} NO [PRIVACYREQUIRED] LOGIN needs TLS (use STARTTLS)\r\n")
            return
        parts = _args(arg)
        if len(parts) != 2:
            await self.send(f"{tag} BAD LOGIN needs a user name and a password\r\n")
            return
        wait = self.svc.login_throttle.blocked(self.peer_ip, parts[0])
        if wait:
            await self.send(f"{tag} NO [UNAVAILABLE] Too many failed logins, try again later\r\n")
            return
        account = await logins.login(self.svc.db, parts[0], parts[1])
        if account is None:
            self.svc.login_throttle.failure(self.peer_ip, parts[0])
            await asyncio.sleep(0.5)
            await self.send(f"{tag} NO [AUTHENTICATIONFAILED] Authentication failed\r\n")
            return
        self.svc.login_throttle.success(self.peer_ip, parts[0])
        self.account = account
        await self.send(f"{tag} OK [CAPABILITY {self.caps()}] Logged in\r\n")

    async def select(self, tag: str, cmd: str, arg: str) -> None:
        assert self.account is not None
        parts = _args(arg)
        opened = await reads.open_mailbox(self.svc, self.account.principal_id, parts[0]) if parts else None
        if opened is None:
            self.selected = None
            await self.send(f"{tag} NO [NONEXISTENT] Mailbox does not exist\r\n")
            return
        box, entries = opened
        self.selected = entries
        access = "READ-ONLY" if cmd == "EXAMINE" else "READ-WRITE"
        await self.send(
            f"* {len(entries)} EXISTS\r\n* 0 RECENT\r\n"
            "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n"
            f"* OK [UIDVALIDITY {box.uidvalidity}] UIDs valid\r\n* OK [UIDNEXT {box.uidnext}] Predicted next UID\r\n"
            f"{tag} OK [{access}] {cmd} completed\r\n"
        )

    async def fetch(self, tag: str, arg: str, *, by_uid: bool) -> None:
        assert self.selected is not None
        spec, _, items = arg.partition(" ")
        items = items.strip().upper().strip("()")
        entries = self.selected
        if by_uid:
            wanted = _seqset(spec, entries[-1].uid if entries else 0)
            chosen = [(i + 1, e) for i, e in enumerate(entries) if e.uid in wanted]
        else:
            nums = _seqset(spec, len(entries))
            chosen = [(n, entries[n - 1]) for n in sorted(nums) if 1 <= n <= len(entries)]
        for num, e in chosen:
            parts: list[bytes] = []
            if by_uid or "UID" in items:
                parts.append(f"UID {e.uid}".encode())
            if "FLAGS" in items:
                parts.append(f"FLAGS ({e.flags})".encode())
            if "RFC822.SIZE" in items:
                parts.append(f"RFC822.SIZE {e.message.size}".encode())
            if "ENVELOPE" in items:
                parts.append(f"ENVELOPE {e.message.envelope}".encode())
            if "BODYSTRUCTURE" in items:
                parts.append(f"BODYSTRUCTURE {e.message.bodystructure}".encode())
            if "BODY[]" in items or "BODY.PEEK[]" in items or re.search(r"\bRFC822\b(?![.])", items):
                raw = await reads.raw_message(self.svc, e.message)
                label = "RFC822" if re.search(r"\bRFC822\b(?![.])", items) else "BODY[]"
                parts.append(f"{label} {{{len(raw)}}}\r\n".encode() + raw)
            await self.send(f"* {num} FETCH (".encode() + b" ".join(parts) + b")\r\n")
        await self.send(f"{tag} OK FETCH completed\r\n")


async def start_imap(svc: Services, sock: socket.socket, tls: ssl.SSLContext | None, *, implicit_tls: bool
                     ) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = ImapSession(svc, reader, writer, tls, implicit_tls)
        try:
            await session.run()
        except Exception:  # noqa: BLE001 - one broken session must never take the server down
            log.exception("IMAP session failed")
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    return await asyncio.start_server(handle, sock=sock, ssl=tls if implicit_tls else None, limit=MAX_LINE)



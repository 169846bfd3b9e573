"""One IMAP connection: the state machine (RFC 9051 §3) and every command.

State kept per connection is deliberately small (10,000 idle connections must fit in well under
1 GiB): the selected mailbox's UIDs as an `array('Q')` (the message-number map), the highest
modseq this connection has reported, and the few UIDs whose flag changes it already told the
client about. Everything else is read from the database when a command needs it.

Untagged updates caused by other connections (EXISTS, EXPUNGE/VANISHED, FETCH FLAGS) are sent
only at the points RFC 9051 §7.5.1 allows: after NOOP, CHECK, IDLE, SELECT-less commands and
the mailbox-changing commands — never while answering FETCH, STORE or SEARCH (nor their UID
forms, so a client's message numbers never shift under a running sync).

Decisions where the RFCs leave room (Dovecot 2.3 does the same unless noted):
* \\Recent is not implemented (IMAP4rev2 dropped it): RECENT is always 0.
* A message number beyond EXISTS is BAD "Invalid messageset"; a UID set never is.
* A FETCH of a message expunged by another connection (still in our map) is silently skipped.
* MULTIAPPEND is atomic (RFC 3502): all the messages are stored in one transaction, or none
  (mailstore.multiappend); the quota is checked for them together.
* COPY never exceeds a quota (an account's message filed twice counts once, see mailstore.changes).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import re
import ssl
import time
from array import array
from bisect import bisect_left
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mailwright.directory import logins
from mailwright.directory.errors import AlreadyExists, Forbidden, Invalid, NotFound, QuotaExceeded
from mailwright.imap import fetch as fetchmod
from mailwright.imap import search as searchmod
from mailwright.imap import seqset, sort_thread
from mailwright.imap.compress import cmd_compress
from mailwright.imap.idle import cmd_idle, shared_changes
from mailwright.imap.parser import ParseError, Token, Tokenizer, as_list, astring, number, split_command
from mailwright.imap.protocol import Limits, Rejected, read_command, read_line
from mailwright.imap.quickparse import quick_split
from mailwright.imap.response import (
    astring_out,
    flags_text,
    mailbox_in,
    mailbox_out,
    parse_datetime,
    quoted,
)
from mailwright.mailstore import changes, imapview, mailbox_ops, messages, multiappend, reads
from mailwright.mailstore.mime import parse_message
from mailwright.services import Services
from mailwright.storage import prepared

log = logging.getLogger(__name__)
ACCOUNT_RECHECK = 30.0  # seconds between account/tenant status checks of a live session

SYSTEM_FLAGS = ["\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"]
_SYS_LOWER = {f.lower(): f for f in SYSTEM_FLAGS}
FLUSH_BYTES = 256 * 1024
PREAUTH_LITERAL = 64 * 1024


def _safe_tag(line: bytes) -> str:
    """The tag to answer a broken command with: its own if it is a valid tag, else "*"."""
    first = line.split(b" ", 1)[0].strip()
    if first and len(first) <= 64 and all(0x21 <= c <= 0x7E and c not in b'{%*+\\"()' for c in first):
        return first.decode("ascii")
    return "*"


class Bad(Exception):
    """Answer the command with BAD and this text."""


class No(Exception):
    """Answer the command with NO and this text (may start with a [CODE])."""


@dataclass(slots=True)
class Selected:
    box_id: int
    name: str
    readonly: bool
    uidvalidity: int
    uids: array[int]
    modseq: int
    keywords: list[str] = field(default_factory=list)
    reported: dict[int, int] = field(default_factory=dict)
    saved: set[int] | None = None
    pending_expunge: set[int] = field(default_factory=set)


Handler = Callable[[str, list[Token]], Awaitable[str | None]]


class ImapSession:
    __slots__ = ("svc", "reader", "writer", "tls", "secure", "peer_ip", "account", "sel", "enabled",
                 "condstore", "out", "closing", "limits", "timeout", "login_failures", "_recheck_at",
                 "_waiting_since", "_timed_out", "_watchdog")

    def __init__(self, svc: Services, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 tls: ssl.SSLContext | None, implicit_tls: bool) -> None:
        self.svc = svc
        self.reader = reader
        self.writer = writer
        self.tls = tls
        self.secure = implicit_tls
        peer = writer.get_extra_info("peername")
        self.peer_ip: str | None = peer[0] if peer else None
        self.account: logins.Account | None = None
        self.sel: Selected | None = None
        self.enabled: set[str] = set()
        self.condstore = False
        self.out: list[bytes] = []
        self.closing = False
        self._recheck_at = 0.0
        self.limits = Limits(max_literal=PREAUTH_LITERAL, max_command=4 * PREAUTH_LITERAL)
        self.timeout = float(getattr(svc.settings, "imap_autologout_seconds", 1800))
        self.login_failures = 0
        self._waiting_since: float | None = None
        self._timed_out = False
        self._watchdog: asyncio.TimerHandle | None = None

    # ---- output

    def w(self, data: bytes | str) -> None:
        self.out.append(data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data)

    async def flush(self) -> None:
        if self.out:
            data = b"".join(self.out)
            self.out.clear()
            self.writer.write(data)
        await self.writer.drain()

    @property
    def utf8(self) -> bool:
        return "UTF8=ACCEPT" in self.enabled or "IMAP4REV2" in self.enabled

    @property
    def rev2(self) -> bool:
        return "IMAP4REV2" in self.enabled

    @property
    def qresync(self) -> bool:
        return "QRESYNC" in self.enabled

    def plaintext_ok(self) -> bool:
        if self.secure:
            return True
        return self.peer_ip in ("127.0.0.1", "::1", "::ffff:127.0.0.1") and bool(
            self.svc.settings.allow_plaintext_auth_on_loopback)

    def caps(self) -> str:
        """Before login only what a client needs to log in (as Dovecot); the full list after."""
        c = ["IMAP4rev1", "IMAP4rev2", "SASL-IR", "LITERAL+", "ID", "ENABLE", "IDLE"]
        if self.account is None:
            if not self.secure and self.tls is not None:
                c.append("STARTTLS")
            c += ["AUTH=PLAIN", "AUTH=LOGIN"] if self.plaintext_ok() else ["LOGINDISABLED"]
            return " ".join(c)
        c += ["NAMESPACE", "UNSELECT", "UIDPLUS", "MOVE", "CHILDREN", "SPECIAL-USE", "LIST-EXTENDED",
              "LIST-STATUS", "ESEARCH", "SEARCHRES", "CONDSTORE", "QRESYNC", "QUOTA", "QUOTA=RES-STORAGE",
              "BINARY", f"APPENDLIMIT={self.svc.settings.max_message_size}", "MULTIAPPEND", "SORT",
              "THREAD=REFERENCES", "STATUS=SIZE", "UTF8=ACCEPT", "COMPRESS=DEFLATE"]
        return " ".join(c)

    # ---- main loop

    async def run(self) -> None:
        self.w(f"* OK [CAPABILITY {self.caps()}] Mailwright ready.\r\n")
        await self.flush()
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        self._watchdog = loop.call_at(loop.time() + self.timeout, self._watch, loop, task)
        try:
            await self._loop(loop, task)
        finally:
            if self._watchdog is not None:
                self._watchdog.cancel()

    async def _loop(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> None:
        while not self.closing:
            self._waiting_since = loop.time()
            try:
                got = await read_command(self.reader, self.writer, self.limits, self.precheck)
            except asyncio.CancelledError:
                if not self._timed_out:
                    raise
                task.uncancel()
                self.w("* BYE Disconnected for inactivity.\r\n")
                await self.flush()
                return
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            finally:
                self._waiting_since = None
            if isinstance(got, Rejected):
                await self.rejected(got)
                continue
            if not await self.still_allowed():
                return
            await self.handle(got)
            await self.flush()

    def _watch(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> None:
        """The autologout timer: one per connection, re-armed lazily (a timer per command, as
        wait_for or asyncio.timeout make, cost ~15 µs of a ~200 µs FETCH). It cancels the
        session's task only while it waits for a command, `timeout` seconds after it began to."""
        since = self._waiting_since
        now = loop.time()
        if since is not None and now - since >= self.timeout:
            self._timed_out = True
            self._watchdog = None
            task.cancel()
            return
        self._watchdog = loop.call_at((since if since is not None else now) + self.timeout, self._watch, loop, task)

    async def still_allowed(self) -> bool:
        """A suspended tenant or account loses its open sessions too, not only new logins.

        Checked at most every ACCOUNT_RECHECK seconds between commands (a read of the account
        and tenant status), and at once when IDLE hears `account.changed`."""
        if self.account is None or time.monotonic() < self._recheck_at:
            return True
        self._recheck_at = time.monotonic() + ACCOUNT_RECHECK
        if await logins.account_is_active(self.svc.db, self.account.principal_id):
            return True
        self.w("* BYE Account disabled.\r\n")
        await self.flush()
        self.closing = True
        return False

    async def precheck(self, head: bytes, size: int) -> bytes | None:
        """Refuse an APPEND before its first literal is sent (see protocol.read_command)."""
        if self.account is None or b"{" in head:
            return None
        try:
            tag, name, args = split_command(head + b"\r\n")
        except ParseError:
            return None
        if name != "APPEND" or not args or len(args) > 3:
            return None
        try:
            mbox = self._mailbox_arg(args[0])
            rest = args[1:]
            if rest and isinstance(rest[0], list):
                _flag_list([rest[0]])
                rest = rest[1:]
            if rest and (not isinstance(rest[0], bytes) or parse_datetime(rest[0].decode("ascii", "replace")) is None):
                raise ParseError("invalid date-time")
        except (ParseError, Bad) as e:
            return f"{tag} BAD Error in IMAP command APPEND: {e}\r\n".encode()
        if size == 0:
            return f"{tag} NO Can't save a zero byte message.\r\n".encode()
        if await imapview.get_box(self.svc, self.pid(), mbox) is None:
            return f"{tag} NO [TRYCREATE] Mailbox doesn't exist: {mbox}\r\n".encode("utf-8", "surrogateescape")
        return None

    async def rejected(self, r: Rejected) -> None:
        if r.reason == "answered":
            return
        tag = _safe_tag(r.head)
        if r.reason == "line":
            self.w(f"{tag} BAD Error in IMAP command: line too long\r\n")
        elif r.reason == "toobig":
            self.w(f"{tag} NO [TOOBIG] Literal too large\r\n")
        else:
            self.w(f"{tag} BAD [TOOBIG] Literal too large\r\n* BYE Literal too large\r\n")
            self.closing = True
        await self.flush()

    async def handle(self, data: bytes) -> None:
        if data.strip() == b"":
            self.w("* BAD Error in IMAP command: Empty command line\r\n")
            return
        try:
            tag, name, args = quick_split(data) or split_command(data)
        except ParseError as e:
            tag = _safe_tag(data)
            self.w(f"{tag} BAD Error in IMAP command: {e}\r\n")
            return
        entry = COMMANDS.get(name)
        if entry is None:
            self.w(f"{tag} BAD Error in IMAP command {name[:30]}: Unknown command.\r\n")
            return
        handler, states = entry
        state = "selected" if self.sel is not None else ("auth" if self.account is not None else "notauth")
        if state not in states:
            if state == "notauth":
                self.w(f"{tag} BAD Error in IMAP command {name}: Please authenticate first.\r\n")
            else:
                self.w(f"{tag} BAD Error in IMAP command {name}: No mailbox selected.\r\n" if state == "auth"
                       and "selected" in states else f"{tag} BAD Command {name} not allowed now.\r\n")
            return
        try:
            text = await handler(self, tag, args)
        except ParseError as e:
            self.w(f"{tag} BAD Error in IMAP command {name}: {e}\r\n")
            return
        except Bad as e:
            self.w(f"{tag} BAD {e}\r\n")
            return
        except No as e:
            self.w(f"{tag} NO {e}\r\n")
            return
        except (ConnectionError, asyncio.IncompleteReadError):
            raise
        except Exception:  # noqa: BLE001 - one command's bug must not end the session
            log.exception("IMAP command %s failed", name)
            self.w(f"{tag} NO [SERVERBUG] Internal error occurred.\r\n")
            return
        if text is not None:
            self.w(f"{tag} {text}\r\n")

    # ---- helpers

    def _mailbox_arg(self, tok: Token) -> str:
        raw = astring(tok)
        try:
            name = imapview.canonical(mailbox_in(raw, self.utf8))
        except ValueError as e:
            raise Bad("Invalid mailbox name (bad modified UTF-7)") from e
        try:
            name.encode("utf-8")
        except UnicodeEncodeError as e:
            raise No("[CANNOT] Mailbox name is not valid UTF-8") from e
        return name

    def pid(self) -> str:
        assert self.account is not None
        return self.account.principal_id

    def _indexes(self, spec: Token, by_uid: bool) -> list[int]:
        """0-based snapshot indexes for a sequence set / UID set / `$`."""
        sel = self.sel
        assert sel is not None
        if not isinstance(spec, str):
            raise ParseError("invalid sequence set")
        if spec == "$":
            saved = sel.saved or set()
            return sorted(i for i, u in enumerate(sel.uids) if u in saved) if saved else []
        if spec.isascii() and spec.isdigit() and 0 < len(spec) < 11 and spec[0] != "0" and int(spec) <= seqset.MAX32:
            n = int(spec)  # one number: what parse+seqs/uid_indexes give, without building ranges
            if by_uid:
                i = bisect_left(sel.uids, n)
                return [i] if i < len(sel.uids) and sel.uids[i] == n else []
            if not sel.uids or n > len(sel.uids):
                raise Bad("Error in IMAP command: Invalid messageset")
            return [n - 1]
        ranges = seqset.parse(spec)
        if by_uid:
            return seqset.uid_indexes(ranges, sel.uids)
        if not sel.uids:
            raise Bad("Error in IMAP command: Invalid messageset")
        try:
            return [n - 1 for n in seqset.seqs(ranges, len(sel.uids))]
        except ParseError as e:
            raise Bad("Error in IMAP command: Invalid messageset") from e

    def _seq_of(self, uid: int) -> int:
        assert self.sel is not None
        i = bisect_left(self.sel.uids, uid)
        if i < len(self.sel.uids) and self.sel.uids[i] == uid:
            return i + 1
        return 0

    async def sync(self, expunges: bool = True, event: object | None = None) -> None:
        """Report what other connections changed in the selected mailbox (EXPUNGE/VANISHED first,
        then EXISTS, then FETCH FLAGS), and advance this connection's modseq.

        With expunges=False (during FETCH/STORE/SEARCH) expunges are remembered, not reported:
        message numbers must not shift under the client (RFC 9051 §7.5.1)."""
        sel = self.sel
        if sel is None:
            return
        self.apply_changes(await shared_changes(self.svc, sel.box_id, sel.modseq, event), expunges)

    def apply_changes(self, ch: imapview.Changes | None, expunges: bool = True) -> None:
        """The synchronous half of `sync`; the IDLE hub (imap/idle.py) calls it directly to apply
        one database answer to thousands of idling sessions without waking their tasks."""
        sel = self.sel
        assert sel is not None
        if ch is None:
            self.w("* BYE Selected mailbox was deleted, have to disconnect.\r\n")
            self.closing = True
            return
        if ch.highestmodseq <= sel.modseq:
            if expunges and sel.pending_expunge:
                self._report_expunged(sorted(sel.pending_expunge))
                sel.pending_expunge.clear()
            return
        if expunges:
            self._report_expunged(sorted(sel.pending_expunge | set(ch.expunged)))
            sel.pending_expunge.clear()
        else:
            sel.pending_expunge.update(u for u in ch.expunged if self._seq_of(u))
        old_count = len(sel.uids)
        top = sel.uids[-1] if sel.uids else 0
        new = [u for u, _m, _f in ch.entries if u > top]
        if new:
            sel.uids.extend(new)
            self.w(f"* {len(sel.uids)} EXISTS\r\n")
        for uid, m, flags in ch.entries:
            if uid > top:
                continue
            if sel.reported.get(uid) == m:
                continue
            seq = self._seq_of(uid)
            if seq == 0 or seq > old_count:
                continue
            self.w(self._flags_fetch(seq, uid, m, flags))
        self.announce_keywords([f for _u, _m, f in ch.entries])
        sel.reported.clear()
        sel.modseq = ch.highestmodseq

    def announce_keywords(self, flag_strings: list[str]) -> None:
        """New keywords in the mailbox: send FLAGS and PERMANENTFLAGS again (as Dovecot does)."""
        sel = self.sel
        if sel is None:
            return
        known = {k.lower() for k in sel.keywords}
        added = False
        for fs in flag_strings:
            for k in fs.split():
                if not k.startswith("\\") and k.lower() not in known:
                    known.add(k.lower())
                    sel.keywords.append(k)
                    added = True
        if added:
            flags = " ".join(SYSTEM_FLAGS + sel.keywords)
            self.w(f"* FLAGS ({flags})\r\n")
            if not sel.readonly:
                self.w(f"* OK [PERMANENTFLAGS ({flags} \\*)] Flags permitted.\r\n")

    def _flags_fetch(self, seq: int, uid: int, modseq: int, flags: str) -> str:
        extra = ""
        if self.qresync:
            extra = f"UID {uid} "
        s = f"* {seq} FETCH ({extra}FLAGS {flags_text(flags)}"
        if self.condstore:
            s += f" MODSEQ ({modseq})"
        return s + ")\r\n"

    def _report_expunged(self, uids: list[int]) -> None:
        sel = self.sel
        assert sel is not None
        present = [u for u in sorted(uids) if self._seq_of(u)]
        if not present:
            return
        if self.qresync:
            for u in present:
                del sel.uids[self._seq_of(u) - 1]
            self.w(f"* VANISHED {seqset.compress(present)}\r\n")
            return
        for u in present:
            seq = self._seq_of(u)
            del sel.uids[seq - 1]
            self.w(f"* {seq} EXPUNGE\r\n")


# ---------------------------------------------------------------------------------------------
# Commands. Each returns the tagged response text (without the tag), or None if already written.

async def cmd_capability(s: ImapSession, tag: str, args: list[Token]) -> str:
    s.w(f"* CAPABILITY {s.caps()}\r\n")
    return "OK Capability completed."


async def cmd_noop(s: ImapSession, tag: str, args: list[Token]) -> str:
    await s.sync()
    return "OK NOOP completed."


async def cmd_check(s: ImapSession, tag: str, args: list[Token]) -> str:
    await s.sync()
    return "OK Check completed."


async def cmd_logout(s: ImapSession, tag: str, args: list[Token]) -> str:
    s.w("* BYE Logging out\r\n")
    s.closing = True
    return "OK Logout completed."


async def cmd_id(s: ImapSession, tag: str, args: list[Token]) -> str:
    if len(args) != 1 or not (isinstance(args[0], list) or (isinstance(args[0], str) and args[0].upper() == "NIL")):
        raise ParseError("ID needs a parameter list or NIL")
    s.w('* ID ("name" "Mailwright")\r\n')
    return "OK ID completed."


async def cmd_starttls(s: ImapSession, tag: str, args: list[Token]) -> str | None:
    if s.secure or s.tls is None:
        raise Bad("TLS is already active." if s.secure else "STARTTLS is not available.")
    if args:
        raise ParseError("STARTTLS takes no arguments")
    s.w(f"{tag} OK Begin TLS negotiation now.\r\n")
    await s.flush()
    # Anything the client pipelined after STARTTLS is plaintext injection: drop it (RFC 9051 §11.1).
    buffered = getattr(s.reader, "_buffer", None)
    if buffered is not None:
        buffered.clear()
    await s.writer.start_tls(s.tls)
    s.secure = True
    return None


async def _authenticated(s: ImapSession, user: str, password: str) -> str:
    if not s.plaintext_ok():
        raise No("[PRIVACYREQUIRED] Plaintext authentication disallowed on non-secure (SSL/TLS) connections.")
    try:
        user.encode("utf-8"), password.encode("utf-8")
    except UnicodeEncodeError:
        user, password = "", ""  # invalid UTF-8 can never match: fail like a wrong password
    if s.svc.login_throttle.blocked(s.peer_ip, user):
        await asyncio.sleep(1)
        raise No("[UNAVAILABLE] Too many failed logins, try again later.")
    account = await logins.login(s.svc.db, user, password)
    if account is None:
        s.svc.login_throttle.failure(s.peer_ip, user)
        s.login_failures += 1
        await asyncio.sleep(min(0.25 * s.login_failures, 2.0))
        raise No("[AUTHENTICATIONFAILED] Authentication failed.")
    s.svc.login_throttle.success(s.peer_ip, user)
    s.account = account
    s.limits = Limits(max_literal=s.svc.settings.max_message_size,
                      max_command=s.svc.settings.max_message_size * 4 + 1024 * 1024)
    return f"OK [CAPABILITY {s.caps()}] Logged in"


async def cmd_login(s: ImapSession, tag: str, args: list[Token]) -> str:
    if len(args) != 2:
        raise ParseError("LOGIN needs a user name and a password")
    return await _authenticated(s, astring(args[0]), astring(args[1]))


async def _sasl_read(s: ImapSession, prompt: str) -> bytes:
    s.w(f"+ {prompt}\r\n")
    await s.flush()
    line = await asyncio.wait_for(read_line(s.reader), s.timeout)
    if line is None:
        raise Bad("AUTHENTICATE response too long")
    line = line.rstrip(b"\r\n")
    if line == b"*":
        raise Bad("Authentication aborted by client.")
    return line


def _b64(data: bytes) -> bytes:
    if data == b"=":
        return b""
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as e:
        raise Bad("Invalid base64 data in continued response") from e


async def cmd_authenticate(s: ImapSession, tag: str, args: list[Token]) -> str:
    if not args or len(args) > 2 or not isinstance(args[0], str):
        raise ParseError("AUTHENTICATE needs a mechanism")
    mech = args[0].upper()
    if mech not in ("PLAIN", "LOGIN"):
        raise No("Unsupported authentication mechanism.")
    if not s.plaintext_ok():
        raise No("[PRIVACYREQUIRED] Plaintext authentication disallowed on non-secure (SSL/TLS) connections.")
    ir = args[1] if len(args) == 2 else None
    if ir is not None and not isinstance(ir, str):
        raise ParseError("invalid initial response")
    if mech == "PLAIN":
        raw = _b64(ir.encode()) if ir is not None else _b64(await _sasl_read(s, ""))
        parts = raw.split(b"\x00")
        if len(parts) != 3:
            raise No("[AUTHENTICATIONFAILED] Authentication failed.")
        authz, user, pw = (p.decode("utf-8", "replace") for p in parts)
        if authz and authz != user:
            raise No("[AUTHORIZATIONFAILED] Authorization failed.")
        return await _authenticated(s, user, pw)
    user_b = _b64(ir.encode()) if ir is not None else _b64(await _sasl_read(s, "VXNlcm5hbWU6"))
    pw_b = _b64(await _sasl_read(s, "UGFzc3dvcmQ6"))
    return await _authenticated(s, user_b.decode("utf-8", "replace"), pw_b.decode("utf-8", "replace"))


async def cmd_enable(s: ImapSession, tag: str, args: list[Token]) -> str:
    if not args:
        raise ParseError("ENABLE needs capabilities")
    done: list[str] = []
    for a in args:
        if not isinstance(a, str):
            raise ParseError("invalid capability")
        up = a.upper()
        if up in ("CONDSTORE", "QRESYNC", "UTF8=ACCEPT", "IMAP4REV2"):
            s.enabled.add(up)
            if up not in [d.upper() for d in done]:
                done.append(up)
            if up in ("CONDSTORE", "QRESYNC"):
                s.condstore = True
            if up == "QRESYNC":
                s.enabled.add("CONDSTORE")
    if done:
        s.w("* ENABLED" + "".join(" " + d for d in done) + "\r\n")
    return "OK Enabled."


async def cmd_namespace(s: ImapSession, tag: str, args: list[Token]) -> str:
    s.w('* NAMESPACE (("" "/")) NIL NIL\r\n')
    return "OK Namespace completed."


# ---- mailboxes

def _pattern_regex(ref: str, pat: str) -> re.Pattern[str]:
    """LIST pattern (* and %) as a regex; a leading INBOX matches case-insensitively."""
    full = pat if not ref or pat.startswith("/") else ref + pat
    prefix = ""
    if full[:5].upper() == "INBOX":
        prefix, full = "(?i:INBOX)", full[5:]
    rx = "".join(".*" if c == "*" else "[^/]*" if c == "%" else re.escape(c) for c in full)
    return re.compile("^" + prefix + rx + "$", re.S)


def _list_attrs(b: imapview.BoxInfo, names: set[str], subscribed: bool, want_sub: bool) -> list[str]:
    attrs = []
    has_kids = any(n.startswith(b.name + "/") for n in names)
    attrs.append("\\HasChildren" if has_kids else "\\HasNoChildren")
    if b.special_use:
        attrs.append(b.special_use)
    if want_sub and subscribed:
        attrs.append("\\Subscribed")
    return attrs


async def cmd_list(s: ImapSession, tag: str, args: list[Token], lsub: bool = False) -> str:
    i = 0
    select_opts: set[str] = set()
    if not lsub and args and isinstance(args[0], list):
        select_opts = {astring(t).upper() for t in args[0]}
        unknown = select_opts - {"SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"}
        if unknown or select_opts == {"RECURSIVEMATCH"}:
            raise ParseError("invalid LIST selection options")
        i = 1
    if len(args) < i + 2:
        raise ParseError("LIST needs a reference and a pattern")
    ref = mailbox_in(astring(args[i]), s.utf8) if not isinstance(args[i], list) else ""
    pats_tok = args[i + 1]
    pats = [astring(p) for p in pats_tok] if isinstance(pats_tok, list) else [astring(pats_tok)]
    try:
        pats = [mailbox_in(p, s.utf8) for p in pats]
    except ValueError as e:
        raise Bad("Invalid mailbox pattern") from e
    ret: set[str] = set()
    status_items: list[str] = []
    rest = args[i + 2:]
    if rest:
        if lsub or len(rest) != 2 or not isinstance(rest[0], str) or rest[0].upper() != "RETURN":
            raise ParseError("invalid LIST arguments")
        opts = as_list(rest[1])
        j = 0
        while j < len(opts):
            o = astring(opts[j]).upper()
            if o == "STATUS":
                j += 1
                if j >= len(opts):
                    raise ParseError("STATUS needs items")
                status_items = [astring(x).upper() for x in as_list(opts[j])]
            elif o not in ("SUBSCRIBED", "CHILDREN", "SPECIAL-USE", "MYRIGHTS"):
                raise ParseError("invalid LIST return option")
            ret.add(o)
            j += 1
    if not lsub and len(pats) == 1 and pats[0] == "":
        s.w('* LIST (\\Noselect) "/" ""\r\n')
        return "OK List completed."
    boxes = await imapview.list_boxes(s.svc, s.pid())
    boxes.sort(key=lambda b: (b.name != "INBOX", b.name))
    names = {b.name for b in boxes}
    want_sub = "SUBSCRIBED" in select_opts or "SUBSCRIBED" in ret
    matchers = [_pattern_regex(ref, p) for p in pats]
    for b in boxes:
        if not any(rx.match(b.name) for rx in matchers):
            continue
        if (lsub or "SUBSCRIBED" in select_opts) and not b.subscribed:
            continue
        if "SPECIAL-USE" in select_opts and not b.special_use:
            continue
        if lsub:
            s.w(b"* LSUB () \"/\" " + mailbox_out(b.name, s.utf8) + b"\r\n")
            continue
        attrs = _list_attrs(b, names, b.subscribed, want_sub)
        s.w(b"* LIST (" + " ".join(attrs).encode() + b") \"/\" " + mailbox_out(b.name, s.utf8) + b"\r\n")
        if status_items:
            try:
                s.w(await _status_line(s, b, status_items))
            except No:
                pass
    return "OK Lsub completed." if lsub else "OK List completed."


async def cmd_lsub(s: ImapSession, tag: str, args: list[Token]) -> str:
    return await cmd_list(s, tag, args, lsub=True)


_STATUS_ITEMS = {"MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "DELETED", "SIZE", "HIGHESTMODSEQ",
                 "APPENDLIMIT"}


async def _status_line(s: ImapSession, b: imapview.BoxInfo, items: list[str]) -> bytes:
    for it in items:
        if it not in _STATUS_ITEMS:
            raise ParseError(f"invalid STATUS item {it[:30]}")
    st = await imapview.status(s.svc, b)
    vals = {"MESSAGES": st.messages, "RECENT": 0, "UIDNEXT": st.uidnext, "UIDVALIDITY": st.uidvalidity,
            "UNSEEN": st.unseen, "DELETED": st.deleted, "SIZE": st.size, "HIGHESTMODSEQ": st.highestmodseq,
            "APPENDLIMIT": s.svc.settings.max_message_size}
    if "HIGHESTMODSEQ" in items:
        s.condstore = True
    body = " ".join(f"{it} {vals[it]}" for it in items)
    return b"* STATUS " + mailbox_out(b.name, s.utf8) + f" ({body})\r\n".encode()


async def cmd_status(s: ImapSession, tag: str, args: list[Token]) -> str:
    if len(args) != 2 or not isinstance(args[1], list) or not args[1]:
        raise ParseError("STATUS needs a mailbox and items")
    name = s._mailbox_arg(args[0])
    items = [astring(t).upper() for t in args[1]]
    b = await imapview.get_box(s.svc, s.pid(), name)
    if b is None:
        raise No("[NONEXISTENT] Mailbox doesn't exist: " + name)
    s.w(await _status_line(s, b, items))
    await s.sync()
    return "OK Status completed."


async def cmd_create(s: ImapSession, tag: str, args: list[Token]) -> str:
    if len(args) not in (1, 2):
        raise ParseError("CREATE needs a mailbox name")
    name = s._mailbox_arg(args[0])
    try:
        await mailbox_ops.create(s.svc, s.pid(), name)
    except AlreadyExists as e:
        raise No("[ALREADYEXISTS] Mailbox already exists") from e
    except Invalid as e:
        raise No(f"[CANNOT] {e}") from e
    await s.sync()
    return "OK Create completed."


async def cmd_delete(s: ImapSession, tag: str, args: list[Token]) -> str:
    if len(args) != 1:
        raise ParseError("DELETE needs a mailbox name")
    name = s._mailbox_arg(args[0])
    if s.sel is not None and s.sel.name == name:
        s.sel = None
        s.w("* OK [CLOSED] Mailbox deleted.\r\n")
    try:
        await mailbox_ops.delete_mailbox(s.svc, s.pid(), name)
    except NotFound as e:
        raise No("[NONEXISTENT] Mailbox doesn't exist: " + name) from e
    except Forbidden as e:
        raise No("INBOX can't be deleted.") from e
    except Invalid as e:
        raise No("[INUSE] Mailbox has children, delete them first") from e
    await s.sync()
    return "OK Delete completed."


async def cmd_rename(s: ImapSession, tag: str, args: list[Token]) -> str:
    if len(args) != 2:
        raise ParseError("RENAME needs two mailbox names")
    old, new = s._mailbox_arg(args[0]), s._mailbox_arg(args[1])
    try:
        await mailbox_ops.rename(s.svc, s.pid(), old, new)
    except NotFound as e:
        raise No("[NONEXISTENT] Mailbox doesn't exist: " + old) from e
    except AlreadyExists as e:
        raise No("[ALREADYEXISTS] Target mailbox already exists") from e
    except Invalid as e:
        raise No(f"[CANNOT] {e}") from e
    if s.sel is not None and (s.sel.name == old or s.sel.name.startswith(old + "/")) and old != "INBOX":
        s.sel.name = new + s.sel.name[len(old):]
    await s.sync()
    return "OK Rename completed."


async def cmd_subscribe(s: ImapSession, tag: str, args: list[Token], on: bool = True) -> str:
    if len(args) != 1:
        raise ParseError("mailbox name expected")
    name = s._mailbox_arg(args[0])
    try:
        await mailbox_ops.set_subscribed(s.svc, s.pid(), name, on)
    except NotFound as e:
        raise No("[NONEXISTENT] Mailbox doesn't exist: " + name) from e
    return "OK Subscribe completed." if on else "OK Unsubscribe completed."


async def cmd_unsubscribe(s: ImapSession, tag: str, args: list[Token]) -> str:
    return await cmd_subscribe(s, tag, args, on=False)


async def cmd_getquotaroot(s: ImapSession, tag: str, args: list[Token]) -> str:
    if len(args) != 1:
        raise ParseError("GETQUOTAROOT needs a mailbox")
    name = s._mailbox_arg(args[0])
    if await imapview.get_box(s.svc, s.pid(), name) is None:
        raise No("[NONEXISTENT] Mailbox doesn't exist: " + name)
    used, limit = await imapview.quota_usage(s.svc, s.pid())
    if not limit:
        s.w(b"* QUOTAROOT " + mailbox_out(name, s.utf8) + b"\r\n")
        return "OK Getquotaroot completed."
    s.w(b"* QUOTAROOT " + mailbox_out(name, s.utf8) + b' "User quota"\r\n')
    s.w(f'* QUOTA "User quota" (STORAGE {used // 1024} {limit // 1024})\r\n')
    return "OK Getquotaroot completed."


async def cmd_getquota(s: ImapSession, tag: str, args: list[Token]) -> str:
    if len(args) != 1:
        raise ParseError("GETQUOTA needs a quota root")
    root = astring(args[0])
    used, limit = await imapview.quota_usage(s.svc, s.pid())
    if root != "User quota" or not limit:
        raise No("Quota root does not exist")
    s.w(f'* QUOTA "User quota" (STORAGE {used // 1024} {limit // 1024})\r\n')
    return "OK Getquota completed."


async def cmd_setquota(s: ImapSession, tag: str, args: list[Token]) -> str:
    raise No("[NOPERM] Quota can be changed only through the management API")


# ---- selecting

async def cmd_select(s: ImapSession, tag: str, args: list[Token], readonly: bool = False) -> str:
    if not args:
        raise ParseError("SELECT needs a mailbox name")
    name = s._mailbox_arg(args[0])
    qresync: list[Token] | None = None
    if len(args) >= 2 and isinstance(args[1], list):  # other trailing words are ignored, as Dovecot does
        params = as_list(args[1])
        j = 0
        while j < len(params):
            p = astring(params[j]).upper()
            if p == "CONDSTORE":
                s.condstore = True
            elif p == "QRESYNC":
                if not s.qresync:
                    raise Bad("QRESYNC not enabled")
                j += 1
                if j >= len(params):
                    raise ParseError("QRESYNC needs parameters")
                qresync = as_list(params[j])
            else:
                raise ParseError("unknown SELECT parameter")
            j += 1
    if s.sel is not None:
        s.sel = None
        s.w("* OK [CLOSED] Previous mailbox closed.\r\n")
    b = await imapview.get_box(s.svc, s.pid(), name)
    if b is None:
        raise No("[NONEXISTENT] Mailbox doesn't exist: " + name)
    ents = await imapview.entries(s.svc, b.id)
    counters = await imapview.counters(s.svc, b.id)
    uidnext, hms = counters if counters else (b.uidnext, b.highestmodseq)
    hms = max([hms] + [m for _u, m, _f in ents])
    uids = array("Q", [u for u, _m, _f in ents])
    keywords: list[str] = []
    seen_kw: set[str] = set()
    first_unseen = 0
    for i, (_u, _m, f) in enumerate(ents):
        low = f.lower()
        if not first_unseen and "\\seen" not in low:
            first_unseen = i + 1
        if f:
            for k in f.split():
                if not k.startswith("\\") and k.lower() not in seen_kw:
                    seen_kw.add(k.lower())
                    keywords.append(k)
    flags = " ".join(SYSTEM_FLAGS + keywords)
    s.w(f"* FLAGS ({flags})\r\n")
    if readonly:
        s.w("* OK [PERMANENTFLAGS ()] Read-only mailbox.\r\n")
    else:
        s.w(f"* OK [PERMANENTFLAGS ({flags} \\*)] Flags permitted.\r\n")
    s.w(f"* {len(uids)} EXISTS\r\n* 0 RECENT\r\n")
    if first_unseen:
        s.w(f"* OK [UNSEEN {first_unseen}] First unseen.\r\n")
    s.w(f"* OK [UIDVALIDITY {b.uidvalidity}] UIDs valid\r\n* OK [UIDNEXT {uidnext}] Predicted next UID\r\n")
    s.w(f"* OK [HIGHESTMODSEQ {hms}] Highest\r\n")
    s.sel = Selected(b.id, b.name, readonly, b.uidvalidity, uids, hms, keywords)
    if qresync is not None:
        await _qresync_select(s, b, qresync, ents)
    access = "READ-ONLY" if readonly else "READ-WRITE"
    return f"OK [{access}] {'Examine' if readonly else 'Select'} completed."


async def _qresync_select(s: ImapSession, b: imapview.BoxInfo, q: list[Token], ents: list[tuple[int, int, str]]
                          ) -> None:
    if len(q) < 2:
        raise ParseError("QRESYNC needs UIDVALIDITY and MODSEQ")
    uidvalidity = number(q[0], nz=True)
    modseq = number(q[1])
    known: list[tuple[int, int]] | None = None
    if len(q) >= 3 and isinstance(q[2], str):
        known = seqset.uid_values(seqset.parse(q[2]), 2**32)
    if uidvalidity != b.uidvalidity:
        return
    gone = await imapview.expunged_since(s.svc, b.id, modseq)
    if known is not None:
        gone = [u for u in gone if seqset.contains(known, u)]
    present = set(s.sel.uids) if s.sel else set()
    gone = [u for u in gone if u not in present]
    if gone:
        s.w(f"* VANISHED (EARLIER) {seqset.compress(gone)}\r\n")
    for i, (u, m, f) in enumerate(ents):
        if m > modseq and (known is None or seqset.contains(known, u)):
            s.w(f"* {i + 1} FETCH (UID {u} FLAGS {flags_text(f)} MODSEQ ({m}))\r\n")


async def cmd_examine(s: ImapSession, tag: str, args: list[Token]) -> str:
    return await cmd_select(s, tag, args, readonly=True)


async def cmd_unselect(s: ImapSession, tag: str, args: list[Token]) -> str:
    s.sel = None
    return "OK Unselect completed."


async def cmd_close(s: ImapSession, tag: str, args: list[Token]) -> str:
    sel = s.sel
    assert sel is not None
    s.sel = None
    if not sel.readonly:
        await changes.expunge(s.svc, s.pid(), sel.box_id)
    return "OK Close completed."


async def cmd_expunge(s: ImapSession, tag: str, args: list[Token], by_uid: bool = False) -> str:
    sel = s.sel
    assert sel is not None
    if sel.readonly:
        raise No("[READ-ONLY] Mailbox is read-only.")
    uids = None
    if by_uid:
        if len(args) != 1:
            raise ParseError("UID EXPUNGE needs a UID set")
        uids = [sel.uids[i] for i in s._indexes(args[0], True)]
        if not uids:
            await s.sync()
            return "OK Expunge completed."
    elif args:
        raise ParseError("EXPUNGE takes no arguments")
    await s.sync()
    gone = await changes.expunge(s.svc, s.pid(), sel.box_id, uids)
    s._report_expunged(gone)
    await s.sync()
    if s.condstore and s.sel is not None:
        return f"OK [HIGHESTMODSEQ {s.sel.modseq}] Expunge completed."
    return "OK Expunge completed."


async def cmd_uid_expunge(s: ImapSession, tag: str, args: list[Token]) -> str:
    return await cmd_expunge(s, tag, args, by_uid=True)


# ---- FETCH / STORE

async def cmd_fetch(s: ImapSession, tag: str, args: list[Token], by_uid: bool = False) -> str:
    sel = s.sel
    assert sel is not None
    if len(args) not in (2, 3):
        raise ParseError("FETCH needs a set and attributes")
    items = fetchmod.parse_items(args[1])
    changed_since: int | None = None
    vanished = False
    if len(args) == 3:
        mods = as_list(args[2])
        j = 0
        while j < len(mods):
            m = astring(mods[j]).upper()
            if m == "CHANGEDSINCE" and j + 1 < len(mods):
                changed_since = number(mods[j + 1])
                j += 2
                s.condstore = True
            elif m == "VANISHED" and by_uid:
                if not s.qresync:
                    raise Bad("VANISHED needs ENABLE QRESYNC")
                vanished = True
                j += 1
            else:
                raise ParseError("invalid FETCH modifier")
        if vanished and changed_since is None:
            raise Bad("VANISHED needs CHANGEDSINCE")
    if any(it.kind == "MODSEQ" for it in items):
        s.condstore = True
    idxs = s._indexes(args[0], by_uid)
    if vanished and isinstance(args[0], str) and changed_since is not None:
        ranges = seqset.uid_values(seqset.parse(args[0]) if args[0] != "$" else [], sel.uids[-1] if sel.uids else 0)
        gone = [u for u in await imapview.expunged_since(s.svc, sel.box_id, changed_since)
                if seqset.contains(ranges, u) and not s._seq_of(u)]
        if gone:
            s.w(f"* VANISHED (EARLIER) {seqset.compress(gone)}\r\n")
    if not idxs:
        return "OK Fetch completed."
    with_modseq = changed_since is not None or (s.condstore and any(it.kind == "FLAGS" for it in items))
    if prepared.inline_reader(s.svc) is not None:  # SQLite: reads run inline, nothing to pin
        await s.sync(expunges=False)
        await _do_fetch(s, items, idxs, by_uid, changed_since, with_modseq)
        return "OK Fetch completed."
    async with prepared.pinned(s.svc) as release:  # PostgreSQL: one connection for the reads
        await s.sync(expunges=False)
        await _do_fetch(s, items, idxs, by_uid, changed_since, with_modseq, release)
    return "OK Fetch completed."


async def _do_fetch(s: ImapSession, items: list[fetchmod.Item], idxs: list[int], by_uid: bool,
                    changed_since: int | None, with_modseq: bool,
                    release: Callable[[], Awaitable[None]] | None = None) -> None:
    """`release` gives back the pinned read connection once the rows are read (before output)."""
    sel = s.sel
    assert sel is not None
    uids = sel.uids
    lo, hi = uids[idxs[0]], uids[idxs[-1]]
    contiguous = len(idxs) == idxs[-1] - idxs[0] + 1
    wanted = None if contiguous else {uids[i] for i in idxs}
    newly_seen: set[int] = set()
    cols = fetchmod.columns_for(items)
    rows: list[Any] | None = None
    if fetchmod.sets_seen(items) and not sel.readonly:
        # BODY[]/RFC822 sets \Seen: read the rows once, store the flag where it is missing and
        # patch those rows with the stored flags and modseq (no second read).
        cur = rows = await imapview.rows(s.svc, sel.box_id, lo, hi, cols) if changed_since is None else None
        if cur is None:
            cur = await imapview.rows(s.svc, sel.box_id, lo, hi, [])
        need = [r[0] for r in cur if (wanted is None or r[0] in wanted) and "\\seen" not in r[2].lower()]
        if need:
            changed, _ = await changes.store_flags(s.svc, s.pid(), sel.box_id, need, "add", ["\\Seen"])
            now: dict[int, tuple[int, str]] = {}
            for u, f, m in changed:
                sel.reported[u] = m
                newly_seen.add(u)
                now[u] = (m, f)
            if rows is not None and now:
                rows = [(r[0], *now[r[0]], *r[3:]) if r[0] in now else r for r in rows]
    if not newly_seen and rows is None and fetchmod.metadata_only(items):
        rows, escaped = await imapview.meta_rows(s.svc, sel.box_id, lo, hi, cols, changed_since=changed_since)
        if release is not None:
            await release()
        plan = fetchmod.meta_plan(items, cols, with_uid=by_uid, with_modseq=with_modseq, escaped=escaped)
        assert plan is not None
        await _fast_fetch(s, plan, rows, wanted)
        return
    if rows is None:
        rows = await imapview.rows(s.svc, sel.box_id, lo, hi, cols, changed_since=changed_since)
    if release is not None:
        await release()
    blob = "blob_hash" in cols
    has_flags = any(it.kind == "FLAGS" for it in items)
    extra_flags = [fetchmod.Item("FLAGS")]
    failed = ""  # the NO text of a BINARY failure
    size = 0
    out = s.out
    for r in rows:
        uid = r[0]
        if wanted is not None and uid not in wanted:
            continue
        i = bisect_left(uids, uid)
        if i >= len(uids) or uids[i] != uid:
            continue
        colvals = dict(zip(cols, r[3:], strict=True))
        raw = await reads.blob(s.svc, str(colvals["blob_hash"]), int(colvals["raw_size"])) if blob else None  # type: ignore[call-overload]
        its = items if has_flags or uid not in newly_seen else items + extra_flags
        try:
            chunk = fetchmod.render(its, i + 1, uid, int(r[1]), r[2], colvals, raw, with_uid=by_uid,
                                    with_modseq=with_modseq or (s.condstore and uid in newly_seen))
        except (fetchmod.UnknownCte, fetchmod.CorruptContent) as e:
            # an unknown CTE outranks corrupt data (what Dovecot answers when a FETCH meets both)
            if isinstance(e, fetchmod.UnknownCte):
                failed = "[UNKNOWN-CTE] Unknown Content-Transfer-Encoding"
            elif not failed:
                failed = "[PARSE] Invalid data in MIME part"
            chunk = b"* %d FETCH (UID %d)\r\n" % (i + 1, uid) if by_uid else b""
        out.append(chunk)
        size += len(chunk)
        if size >= FLUSH_BYTES:
            await s.flush()
            size = 0
    if failed:
        raise No(failed)


async def _fast_fetch(s: ImapSession, plan: Callable[[Any, int], bytes], rows: list[Any], wanted: set[int] | None
                      ) -> None:
    """Metadata-only FETCH: one formatted chunk per message, written in large batches."""
    sel = s.sel
    assert sel is not None
    uids = sel.uids
    out = s.out
    size = 0
    n = len(uids)
    i = 0
    for r in rows:
        uid = r[0]
        if wanted is not None and uid not in wanted:
            continue
        if i >= n or uids[i] != uid:
            i = bisect_left(uids, uid)
            if i >= n or uids[i] != uid:
                continue
        chunk = plan(r, i + 1)
        i += 1
        out.append(chunk)
        size += len(chunk)
        if size >= FLUSH_BYTES * 4:
            await s.flush()
            size = 0


def _flag_list(toks: list[Token]) -> list[str]:
    if len(toks) == 1 and isinstance(toks[0], list):
        toks = toks[0]
    out = []
    for t in toks:
        if not isinstance(t, str):
            raise ParseError("invalid flag")
        if t.startswith("\\"):
            canon = _SYS_LOWER.get(t.lower())
            if canon is None:
                raise ParseError(f"Invalid system flag {t[:30]}")
            out.append(canon)
        else:
            if any(c in t for c in '(){%*"\\]') or not t.isprintable() or len(t) > 200:
                raise ParseError("Invalid keyword")
            out.append(t)
    return out


async def cmd_store(s: ImapSession, tag: str, args: list[Token], by_uid: bool = False) -> str:
    sel = s.sel
    assert sel is not None
    if len(args) < 3:
        raise ParseError("STORE needs a set, an item and flags")
    j = 1
    unchanged: int | None = None
    if isinstance(args[1], list):
        mods = args[1]
        if len(mods) != 2 or astring(mods[0]).upper() != "UNCHANGEDSINCE":
            raise ParseError("invalid STORE modifier")
        unchanged = number(mods[1])
        s.condstore = True
        j = 2
    if len(args) < j + 2:
        raise ParseError("STORE needs flags")
    op = astring(args[j]).upper()
    silent = op.endswith(".SILENT")
    base = op[:-7] if silent else op
    mode = {"FLAGS": "set", "+FLAGS": "add", "-FLAGS": "remove"}.get(base)
    if mode is None:
        raise ParseError("invalid STORE item")
    flags = _flag_list(args[j + 1:])
    idxs = s._indexes(args[0], by_uid)
    if sel.readonly:
        raise No("[READ-ONLY] Mailbox is read-only.")
    if not idxs:
        return "OK Store completed."
    target = [sel.uids[i] for i in idxs]
    await s.sync(expunges=False)
    changed, failed = await changes.store_flags(s.svc, s.pid(), sel.box_id, target, mode, flags,
                                                unchanged_since=unchanged)
    for u, _f, m in changed:
        sel.reported[u] = m
    # Only messages whose flags changed get a FETCH (Dovecot); with CONDSTORE a .SILENT store
    # still reports the new MODSEQ (RFC 7162 §3.2).
    for u, f, m in changed:
        seq = s._seq_of(u)
        if not seq:
            continue
        uidp = f"UID {u} " if by_uid or s.qresync else ""
        if silent:
            if s.condstore:
                s.w(f"* {seq} FETCH ({uidp}MODSEQ ({m}))\r\n")
            continue
        line = f"* {seq} FETCH ({uidp}FLAGS {flags_text(f)}"
        if s.condstore:
            line += f" MODSEQ ({m})"
        s.w(line + ")\r\n")
    s.announce_keywords([f for _u, f, _m in changed])
    if failed:
        shown = failed if by_uid else [s._seq_of(u) for u in failed]
        return f"OK [MODIFIED {seqset.compress(shown)}] Conditional STORE failed"
    return "OK Store completed."


# ---- SEARCH / SORT / THREAD

async def _run_search(s: ImapSession, q: searchmod.Query, extra_cols: list[str] | None = None
                      ) -> list[tuple[searchmod.Msg, dict[str, object]]]:
    sel = s.sel
    assert sel is not None
    if q.charset not in (None, "UTF-8", "US-ASCII"):
        raise No("[BADCHARSET (UTF-8 US-ASCII)] Unsupported charset")
    if not sel.uids:
        return []
    cols: list[str] = [c for c in ("size", "internal_date", "sent_date", "search_text") if c in q.needs]
    if "search_text" in q.needs:
        cols += ["subject", "from_display"]
    if "header" in q.needs:
        cols += ["blob_hash", "header_size"]
    for c in extra_cols or []:
        if c not in cols:
            cols.append(c)
    rows = await imapview.rows(s.svc, sel.box_id, 1, 2**63, cols)
    uids = sel.uids
    top = uids[-1]
    saved = sel.saved or set()
    out: list[tuple[searchmod.Msg, dict[str, object]]] = []
    from mailwright.mailstore.mime import _decode_header, _header_fields

    for r in rows:
        uid = int(r[0])
        i = bisect_left(uids, uid)
        if i >= len(uids) or uids[i] != uid:
            continue
        cv = dict(zip(cols, r[3:], strict=True))
        m = searchmod.Msg(i + 1, uid, int(r[1]), frozenset(f.lower() for f in r[2].split()),
                          int(cv.get("size") or 0), cv.get("internal_date"),  # type: ignore[arg-type]
                          cv.get("sent_date"), str(cv.get("search_text") or "").casefold())  # type: ignore[arg-type]
        if "header" in q.needs:
            try:
                raw = await s.svc.blobs.get(str(cv["blob_hash"]))
            except OSError:
                raw = b""
            end = raw.find(b"\r\n\r\n")
            block = raw[: end + 2] if end >= 0 else raw
            fields = [(n, v) for n, v in _header_fields(block.rstrip(b"\r\n")) if n]
            m.headers = [(n, _decode_header(v).casefold()) for n, v in fields]
            if "search_text" in q.needs:  # (BODY/TEXT always read the header block too)
                if messages.search_text_cut(cv.get("search_text")):  # type: ignore[arg-type]
                    m.text = (await _full_search_text(raw)).casefold()
                m.body = _body_text(m.text, cv, fields)
        if searchmod.matches(q.root, m, saved, top, len(uids)):
            out.append((m, cv))
    return out


async def _full_search_text(raw: bytes) -> str:
    """The search text of a message whose stored one was cut (mailstore.messages.SEARCH_TEXT_MAX),
    from its bytes; a big message is parsed off the event loop."""
    if len(raw) > 256 * 1024:
        return (await asyncio.to_thread(parse_message, raw)).search_text
    return parse_message(raw).search_text


def _body_text(text: str, cv: dict[str, object], fields: list[tuple[str, bytes]]) -> str:
    """mailstore stores search_text as Subject, From, To, Cc (decoded, present ones) then the
    text parts; SEARCH BODY must not match the header lines (Dovecot's BODY is body only)."""
    from mailwright.mailstore.mime import _decode_header, _header_value

    prefix = [str(cv.get("subject") or ""), str(cv.get("from_display") or "")]
    for name in ("to", "cc"):
        v = _header_value(fields, name)
        if v is not None:
            prefix.append(_decode_header(v))
    head = "\n".join(prefix).casefold()
    if text.startswith(head):
        return text[len(head) + 1:]
    return text


def _search_return(args: list[Token]) -> tuple[set[str] | None, list[Token]]:
    if args and isinstance(args[0], str) and args[0].upper() == "RETURN":
        if len(args) < 2:
            raise ParseError("RETURN needs options")
        opts = {astring(o).upper() for o in as_list(args[1])}
        if opts - {"MIN", "MAX", "COUNT", "ALL", "SAVE"}:
            raise ParseError("invalid SEARCH RETURN option")
        return (opts or {"ALL"}), args[2:]
    return None, args


async def cmd_search(s: ImapSession, tag: str, args: list[Token], by_uid: bool = False) -> str:
    sel = s.sel
    assert sel is not None
    ret, keys = _search_return(args)
    q = searchmod.parse(keys)
    if q.has_modseq:
        s.condstore = True
    if ret is None and s.rev2:
        ret = {"ALL"}
    await s.sync(expunges=False)
    try:
        found = await _run_search(s, q)
    except No:
        if ret and "SAVE" in ret:
            sel.saved = set()
        raise
    nums = [m.uid if by_uid else m.seq for m, _ in found]
    top_modseq = max((m.modseq for m, _ in found), default=0)
    if ret is None:
        line = "* SEARCH" + "".join(f" {n}" for n in nums)
        if q.has_modseq and nums:
            line += f" (MODSEQ {top_modseq})"
        s.w(line + "\r\n")
        return "OK Search completed."
    if "SAVE" in ret:
        if found and ("MIN" in ret or "MAX" in ret) and not ({"ALL", "COUNT"} & ret):
            # RFC 5182 §2.4: with only MIN/MAX, $ is just those messages
            picked = ([found[0][0].uid] if "MIN" in ret else []) + ([found[-1][0].uid] if "MAX" in ret else [])
            sel.saved = set(picked)
        else:
            sel.saved = {m.uid for m, _ in found}
        if ret == {"SAVE"}:
            return "OK Search completed."
    parts = [f'* ESEARCH (TAG "{tag}")']
    if by_uid:
        parts.append("UID")
    if nums:
        if "MIN" in ret:
            parts.append(f"MIN {min(nums)}")
        if "MAX" in ret:
            parts.append(f"MAX {max(nums)}")
    if "COUNT" in ret:
        parts.append(f"COUNT {len(nums)}")
    if nums and "ALL" in ret:
        parts.append(f"ALL {seqset.compress(nums)}")
    if q.has_modseq and nums:
        parts.append(f"MODSEQ {top_modseq}")
    s.w(" ".join(parts) + "\r\n")
    return "OK Search completed."


async def cmd_sort(s: ImapSession, tag: str, args: list[Token], by_uid: bool = False) -> str:
    ret: set[str] | None = None
    if args and isinstance(args[0], str) and args[0].upper() == "RETURN":
        ret, args = _search_return(args)
    if len(args) < 3:
        raise ParseError("SORT needs criteria, a charset and keys")
    criteria = sort_thread.parse_criteria(args[0])
    q = searchmod.parse(args[2:], allow_charset=False)
    q.charset = astring(args[1]).upper()
    found = await _run_search(s, q, sort_thread.SORT_COLUMNS)
    rows = [sort_thread.SortRow(m.seq, m.uid, cv) for m, cv in found]
    ordered = sort_thread.sort(rows, criteria)
    nums = [r.uid if by_uid else r.seq for r in ordered]
    if ret is not None:
        parts = [f'* ESEARCH (TAG "{tag}")'] + (["UID"] if by_uid else [])
        if nums and "MIN" in ret:
            parts.append(f"MIN {nums[0]}")
        if nums and "MAX" in ret:
            parts.append(f"MAX {nums[-1]}")
        if "COUNT" in ret:
            parts.append(f"COUNT {len(nums)}")
        if nums and "ALL" in ret:
            parts.append("ALL " + ",".join(str(n) for n in nums))
        s.w(" ".join(parts) + "\r\n")
    else:
        s.w("* SORT" + "".join(f" {n}" for n in nums) + "\r\n")
    return "OK Sort completed."


async def cmd_thread(s: ImapSession, tag: str, args: list[Token], by_uid: bool = False) -> str:
    if len(args) < 3 or not isinstance(args[0], str):
        raise ParseError("THREAD needs an algorithm, a charset and keys")
    if args[0].upper() != "REFERENCES":
        raise Bad("Unknown thread algorithm")
    q = searchmod.parse(args[2:], allow_charset=False)
    q.charset = astring(args[1]).upper()
    found = await _run_search(s, q, sort_thread.THREAD_COLUMNS)
    rows = [sort_thread.SortRow(m.seq, m.uid if by_uid else -1, cv) for m, cv in found]
    s.w("* THREAD " + sort_thread.thread_references(rows) + "\r\n" if rows else "* THREAD\r\n")
    return "OK Thread completed."


# ---- COPY / MOVE / APPEND

async def cmd_copy(s: ImapSession, tag: str, args: list[Token], by_uid: bool = False, move: bool = False) -> str:
    sel = s.sel
    assert sel is not None
    if len(args) != 2:
        raise ParseError("COPY needs a set and a mailbox")
    idxs = s._indexes(args[0], by_uid)
    name = s._mailbox_arg(args[1])
    dst = await imapview.get_box(s.svc, s.pid(), name)
    if dst is None:
        raise No("[TRYCREATE] Mailbox doesn't exist: " + name)
    if move and sel.readonly:
        raise No("[READ-ONLY] Mailbox is read-only.")
    verb = "Move" if move else "Copy"
    if not idxs:
        return "OK No messages found." if by_uid else f"OK {verb} completed."
    uids = [sel.uids[i] for i in idxs]
    try:
        pairs = await changes.copy(s.svc, s.pid(), sel.box_id, uids, dst.id, move=move)
    except QuotaExceeded as e:
        raise No("[OVERQUOTA] Quota exceeded") from e
    if not pairs:
        return f"OK {verb} completed."
    src_set, dst_set = seqset.compress([a for a, _ in pairs]), seqset.compress([b for _, b in pairs])
    code = f"COPYUID {dst.uidvalidity} {src_set} {dst_set}"
    if move:
        s.w(f"* OK [{code}] Moved UIDs.\r\n")
        s._report_expunged([a for a, _ in pairs])
        if dst.id == sel.box_id:
            await s.sync()
        return f"OK {verb} completed."
    if dst.id == sel.box_id:
        await s.sync()
    return f"OK [{code}] {verb} completed."


async def cmd_move(s: ImapSession, tag: str, args: list[Token], by_uid: bool = False) -> str:
    return await cmd_copy(s, tag, args, by_uid=by_uid, move=True)


async def cmd_append(s: ImapSession, tag: str, args: list[Token]) -> str:
    if len(args) < 2:
        raise ParseError("APPEND needs a mailbox and a message")
    name = s._mailbox_arg(args[0])
    msgs: list[tuple[list[str], datetime | None, bytes]] = []
    j = 1
    while j < len(args):
        flags: list[str] = []
        when = None
        if isinstance(args[j], list):
            flags = _flag_list([args[j]])
            j += 1
        tok = args[j] if j < len(args) else None
        if j + 1 < len(args) and isinstance(tok, bytes) and len(tok) < 64 and (
                isinstance(args[j + 1], bytes) or args[j + 1] in ("UTF8", "utf8")):
            when = parse_datetime(tok.decode("ascii", "replace"))
            if when is None and (len(tok) < 40 and b"\n" not in tok):
                raise ParseError("invalid date-time")
            if when is not None:
                j += 1
        if j >= len(args):
            raise ParseError("APPEND needs a message literal")
        body = args[j]
        if isinstance(body, str) and body.upper() == "UTF8" and j + 1 < len(args) and isinstance(args[j + 1], list):
            inner = args[j + 1]
            if len(inner) != 1 or not isinstance(inner[0], bytes):
                raise ParseError("invalid UTF8 literal")
            body = inner[0]
            j += 1
        if not isinstance(body, bytes):
            raise ParseError("APPEND needs a message literal")
        msgs.append((flags, when, body))
        j += 1
    box = await imapview.get_box(s.svc, s.pid(), name)
    if box is None:
        raise No("[TRYCREATE] Mailbox doesn't exist: " + name)
    for _f, _w, body in msgs:
        if not body:
            raise No("Can't save a zero byte message.")
        if len(body) > s.svc.settings.max_message_size:
            raise No("[TOOBIG] Message too large")
    try:
        stored = await multiappend.append_all(s.svc, s.pid(), box.id,
                                              [multiappend.NewMessage(body, flags, when) for flags, when, body in msgs])
    except QuotaExceeded as e:
        raise No("[OVERQUOTA] Quota exceeded (mailbox for user is full)") from e
    uids = [st.uid for st in stored]
    await s.sync()
    return f"OK [APPENDUID {box.uidvalidity} {seqset.compress(uids)}] Append completed."


# ---------------------------------------------------------------------------------------------

ANY = ("notauth", "auth", "selected")
AUTH = ("auth", "selected")
SEL = ("selected",)


def _uid(fn: Callable[..., Awaitable[str]]) -> Callable[[ImapSession, str, list[Token]], Awaitable[str]]:
    async def go(s: ImapSession, tag: str, args: list[Token]) -> str:
        return await fn(s, tag, args, by_uid=True)
    return go


COMMANDS: dict[str, tuple[Callable[[ImapSession, str, list[Token]], Awaitable[str | None]], tuple[str, ...]]] = {
    "CAPABILITY": (cmd_capability, ANY),
    "NOOP": (cmd_noop, ANY),
    "LOGOUT": (cmd_logout, ANY),
    "ID": (cmd_id, ANY),
    "STARTTLS": (cmd_starttls, ("notauth",)),
    "LOGIN": (cmd_login, ("notauth",)),
    "AUTHENTICATE": (cmd_authenticate, ("notauth",)),
    "ENABLE": (cmd_enable, AUTH),
    "NAMESPACE": (cmd_namespace, AUTH),
    "LIST": (cmd_list, AUTH),
    "LSUB": (cmd_lsub, AUTH),
    "STATUS": (cmd_status, AUTH),
    "CREATE": (cmd_create, AUTH),
    "DELETE": (cmd_delete, AUTH),
    "RENAME": (cmd_rename, AUTH),
    "SUBSCRIBE": (cmd_subscribe, AUTH),
    "UNSUBSCRIBE": (cmd_unsubscribe, AUTH),
    "GETQUOTAROOT": (cmd_getquotaroot, AUTH),
    "GETQUOTA": (cmd_getquota, AUTH),
    "SETQUOTA": (cmd_setquota, AUTH),
    "SELECT": (cmd_select, AUTH),
    "EXAMINE": (cmd_examine, AUTH),
    "APPEND": (cmd_append, AUTH),
    "IDLE": (cmd_idle, AUTH),
    "COMPRESS": (cmd_compress, AUTH),
    "CHECK": (cmd_check, SEL),
    "CLOSE": (cmd_close, SEL),
    "UNSELECT": (cmd_unselect, SEL),
    "EXPUNGE": (cmd_expunge, SEL),
    "UID EXPUNGE": (cmd_uid_expunge, SEL),
    "FETCH": (cmd_fetch, SEL),
    "UID FETCH": (_uid(cmd_fetch), SEL),
    "STORE": (cmd_store, SEL),
    "UID STORE": (_uid(cmd_store), SEL),
    "SEARCH": (cmd_search, SEL),
    "UID SEARCH": (_uid(cmd_search), SEL),
    "SORT": (cmd_sort, SEL),
    "UID SORT": (_uid(cmd_sort), SEL),
    "THREAD": (cmd_thread, SEL),
    "UID THREAD": (_uid(cmd_thread), SEL),
    "COPY": (cmd_copy, SEL),
    "UID COPY": (_uid(cmd_copy), SEL),
    "MOVE": (cmd_move, SEL),
    "UID MOVE": (_uid(cmd_move), SEL),
}

__all__ = ["ImapSession", "COMMANDS", "Tokenizer", "astring_out", "quoted"]

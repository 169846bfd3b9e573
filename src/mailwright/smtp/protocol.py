"""Our aiosmtpd protocol: the ESMTP dialect, DATA reading and per-connection limits.

aiosmtpd parses commands; this subclass changes what it does not do the way an MX must:

- **EHLO** advertises PIPELINING, SIZE, 8BITMIME, SMTPUTF8, ENHANCEDSTATUSCODES, STARTTLS
  (until TLS is up) and, on submission only once TLS is up, ``AUTH PLAIN LOGIN``.
  aiosmtpd already processes pipelined commands (it reads one line at a time from a stream);
  it just never said so.
- **Enhanced status codes** (RFC 2034/3463) are added to every 2xx/4xx/5xx reply that lacks
  one, except the greeting and the HELO/EHLO answer, as the RFC asks.
- **DATA** is read in chunks and searched for ``CRLF.CRLF`` only, at C speed (aiosmtpd's
  line-at-a-time loop costs milliseconds per 100 KiB). SMTP smuggling: a bare LF or bare CR
  never ends a line, so ``\\n.\\n``, ``\\r.\\r`` and ``\\n.\\r\\n`` are message content. After
  dot-unstuffing, bare LFs are turned into CRLF (Postfix 3.9 ``smtpd_forbid_bare_newline =
  normalize``) so that what we store - and may forward - has one line-ending convention, and
  a forwarded copy dot-stuffs such lines instead of passing the trick on. The size limit is
  enforced while reading: past it the rest is read and discarded, then 552 5.3.4.
- **Limits** (see limits.py): too many errors or commands -> 421 and hang up; idle and DATA
  timeouts close the connection (421 4.4.2 for DATA).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import logging
import re
import socket
import ssl
from typing import Any

import aiosmtpd.smtp
from aiosmtpd.smtp import SMTP, syntax

from mailwright.smtp.limits import SmtpLimits

log = logging.getLogger(__name__)

_HAS_ENHANCED = re.compile(r"^[245]\d\d[ -][245]\.\d{1,3}\.\d{1,3}(?: |$)")
_REPLY = re.compile(r"^([245])(\d\d)([ -])(.*)$", re.S)
# Default enhanced codes for aiosmtpd's own replies (RFC 3463).
_DEFAULT_ENHANCED = {
    "221": "2.0.0", "235": "2.7.0", "250": "2.0.0", "252": "2.5.0",
    "421": "4.7.0", "451": "4.3.0", "452": "4.3.1", "454": "4.7.0",
    "500": "5.5.2", "501": "5.5.4", "502": "5.5.1", "503": "5.5.1", "504": "5.5.4",
    "530": "5.7.0", "535": "5.7.8", "538": "5.7.11", "550": "5.0.0", "552": "5.3.4",
    "553": "5.1.3", "554": "5.0.0", "555": "5.5.4",
}
_BARE_LF = re.compile(rb"(?<!\r)\n")
# The common path of MAIL/RCPT: <dot-atom@host.name> (ASCII), parsed without the email
# package's header parser (which costs ~0.2 ms per address: a tenth of a message's CPU).
_BARE_POSTMASTER = re.compile(r"(?i)TO:\s*<postmaster>(.*)", re.S)
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_PATH = re.compile(rf"<({_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>(.*)", re.S)
_CHUNK = 1 << 16


class _AuthMembersOnly:
    """Stands in for the ``inspect`` module inside ``aiosmtpd.smtp``, whose only use of
    ``getmembers`` is to list an object's ``auth_*`` methods on every new connection. The real
    one reads every attribute of the protocol object and of the handler (properties included):
    ~0.7 ms per connection, a quarter of a one-message session's CPU. This returns the same
    ``auth_*`` members, their names found once per class."""

    _names: dict[type, tuple[str, ...]] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(inspect, name)

    def getmembers(self, obj: object) -> list[tuple[str, Any]]:
        names = self._names.get(type(obj))
        if names is None:
            names = self._names[type(obj)] = tuple(n for n in dir(type(obj)) if n.startswith("auth_"))
        return [(n, getattr(obj, n)) for n in names]


aiosmtpd.smtp.inspect = _AuthMembersOnly()  # type: ignore[attr-defined,assignment]


def add_enhanced_code(status: str) -> str:
    """``status`` with an RFC 3463 code after the reply code, unless it has one."""
    if _HAS_ENHANCED.match(status):
        return status
    m = _REPLY.match(status)
    if not m:
        return status
    code = m.group(1) + m.group(2)
    enh = _DEFAULT_ENHANCED.get(code, f"{m.group(1)}.0.0")
    return f"{code}{m.group(3)}{enh} {m.group(4)}"


def tls_description(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> str | None:
    """Postfix-style ``TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)``."""
    if ssl_object is None:
        return None
    cipher = ssl_object.cipher()
    version = ssl_object.version() or "TLS"
    if not cipher:
        return version
    name, _, bits = cipher
    return f"{version} with cipher {name} ({bits}/{bits} bits)"


class MailwrightSMTP(SMTP):
    """One SMTP connection (MX or submission); the handler makes every mail decision."""

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        m = _PLAIN_PATH.fullmatch(arg.lstrip())
        rest = m.group(2) if m is not None else ""
        if m is None or (rest and (rest[0] not in " \t" or rest.lstrip(" \t")[:1] == "(")):
            return super()._getaddr(arg)  # anything unusual: aiosmtpd's full RFC 5322 parser
        addr = m.group(1)
        if self.local_part_limit and len(addr.rpartition("@")[0]) > self.local_part_limit:
            return None, None
        return addr, rest.lstrip(" \t")

    def __init__(
        self,
        handler: Any,
        *,
        limits: SmtpLimits,
        hostname: str,
        tls_context: ssl.SSLContext | None,
        implicit_tls: bool = False,
        offer_auth: bool = False,
        allow_plaintext_auth_on_loopback: bool = False,
    ) -> None:
        super().__init__(
            handler,
            hostname=hostname,
            ident="Mailwright ESMTP",
            data_size_limit=limits.max_message_size,
            enable_SMTPUTF8=True,
            decode_data=False,
            tls_context=None if implicit_tls else tls_context,
            require_starttls=False,
            timeout=limits.timeout,
            auth_required=offer_auth,
            auth_require_tls=True,
        )
        if implicit_tls:
            self._auth_require_tls = False  # the whole connection is TLS
        self.limits = limits
        self.implicit_tls = implicit_tls
        self.offer_auth = offer_auth
        self._plaintext_loopback = allow_plaintext_auth_on_loopback
        # aiosmtpd keeps these limits in a class-level dict and grows them on every EHLO;
        # ours are per connection and fixed (room for SIZE=, BODY=, SMTPUTF8, XSAVESENT).
        self.command_size_limits = collections.defaultdict(lambda: self.command_size_limit)
        self.command_size_limits["MAIL"] = self.command_size_limit + 26 + 10 + 15 + 10
        self._enhanced = False  # off for the greeting; on once the client has said HELO/EHLO
        self._raw_replies = False
        self._idle_deadline = 0.0
        self._replies = 0
        self._greeted = False
        self._errors = 0
        self._closing = False
        self._held = b""  # replies waiting to leave with the next one (see _send)
        if not offer_auth:
            self._auth_methods.clear()

    # --- idle timeout ----------------------------------------------------------------

    def _reset_timeout(self, duration: float | None = None) -> None:
        """aiosmtpd cancels and re-creates a timer on every command line and DATA chunk (a
        heap push and a cancelled handle each time); here one timer stays armed and only the
        deadline moves. When it fires early it re-arms for the rest; a shorter new deadline
        (the PROXY handshake's) re-arms at once."""
        deadline = self.loop.time() + (duration or self._timeout_duration)
        self._idle_deadline = deadline
        handle = self._timeout_handle
        if handle is None or handle.cancelled() or handle.when() > deadline:
            if handle is not None:
                handle.cancel()
            self._timeout_handle = self.loop.call_at(deadline, self._idle_check)

    def _idle_check(self) -> None:
        if self.loop.time() >= self._idle_deadline:
            self._timeout_cb()
        else:
            self._timeout_handle = self.loop.call_at(self._idle_deadline, self._idle_check)

    # --- connection state ------------------------------------------------------------

    @property
    def client_ip(self) -> str:
        peer = self.session.peer if self.session is not None else None
        if isinstance(peer, tuple) and peer:
            return str(peer[0])
        return "127.0.0.1" if peer is None else str(peer)

    @property
    def tls_active(self) -> bool:
        return self.implicit_tls or self._tls_protocol is not None

    def ssl_object(self) -> Any:
        if self._tls_protocol is not None and self.session is not None and self.session.ssl:
            return self.session.ssl.get("ssl_object")
        if self.implicit_tls and self.transport is not None:
            return self.transport.get_extra_info("ssl_object")
        return None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None and self._original_transport is None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # replies are small
        super().connection_made(transport)
        if self.offer_auth and self._plaintext_loopback and not self.tls_active and _is_loopback(self.client_ip):
            # Local development / benchmarks: AUTH without TLS from 127.0.0.1/::1 only.
            self._auth_require_tls = False

    def can_offer_auth(self) -> bool:
        return self.offer_auth and (self.tls_active or not self._auth_require_tls)

    # --- replies ---------------------------------------------------------------------

    async def push(self, status: str | bytes) -> None:
        if isinstance(status, str) and status[:1] in "245" and status[3:4] in (" ", "-"):
            final = status[3:4] == " " or "\r\n" in status  # a whole multi-line reply in one string
            if self._enhanced and not self._raw_replies:
                status = add_enhanced_code(status)
            if final and self._greeted:
                self._replies += 1
                if status[0] in "45":
                    self._errors += 1
        await self._send(status)
        self._greeted = True  # the greeting is not a reply to a command
        if not self._closing and self.transport is not None:
            if self._errors > self.limits.max_errors:
                await self._hang_up("421 4.7.0 Too many errors, closing connection")
            elif self._replies > self.limits.max_commands:
                await self._hang_up("421 4.7.0 Too many commands, closing connection")

    async def _send(self, status: str | bytes) -> None:
        """Write one reply. A 250 to a pipelined command whose successor is already buffered is
        held and leaves with the next reply (RFC 2920 lets the server batch them): a pipelining
        client's MAIL, RCPT and DATA are answered by one write instead of three. Intermediate
        replies (220 to STARTTLS, 334, 354) and errors always go out at once, so a client
        waiting for one never waits on us."""
        data = (status.encode("utf-8" if self.enable_SMTPUTF8 else "ascii") if isinstance(status, str)
                else status) + b"\r\n"
        buffered = getattr(self._reader, "_buffer", b"")
        if data[:3] == b"250" and not self._closing and b"\n" in buffered:
            self._held += data
            return
        if self._held:
            data, self._held = self._held + data, b""
        self._writer.write(data)
        await self._writer.drain()

    async def _hang_up(self, status: str) -> None:
        self._closing = True
        log.info("%r: %s", self.session.peer if self.session else None, status)
        try:
            await self._send(status)
        finally:
            if self.transport is not None:
                self.transport.close()

    # --- commands --------------------------------------------------------------------

    @syntax("HELO hostname")
    async def smtp_HELO(self, hostname: str) -> None:
        self._raw_replies = True
        try:
            await super().smtp_HELO(hostname)
        finally:
            self._raw_replies = False
        if self.session is not None and self.session.host_name:
            self._enhanced = True

    @syntax("EHLO hostname")
    async def smtp_EHLO(self, hostname: str) -> None:
        if not hostname:
            await self.push("501 5.5.4 Syntax: EHLO hostname")
            return
        self._set_rset_state()
        assert self.session is not None
        self.session.extended_smtp = True
        self.session.host_name = hostname
        lines = [self.hostname, "PIPELINING", f"SIZE {self.data_size_limit}", "8BITMIME", "SMTPUTF8",
                 "ENHANCEDSTATUSCODES"]
        if self.tls_context is not None and not self.tls_active:
            lines.append("STARTTLS")
        if self.can_offer_auth() and self._auth_methods:
            lines.append("AUTH " + " ".join(sorted(self._auth_methods)))
        ehlo_hook = getattr(self.event_handler, "extra_ehlo_keywords", None)
        if ehlo_hook is not None:
            lines.extend(ehlo_hook(self))
        # One write for the whole reply: line-by-line writes meet Nagle + delayed ACK (40 ms).
        self._raw_replies = True
        try:
            await self.push("\r\n".join(["250-" + ln for ln in lines[:-1]] + ["250 " + lines[-1]]))
        finally:
            self._raw_replies = False
        self._enhanced = True

    async def handle_exception(self, error: Exception) -> str:
        """A command's handler failed (a database gone for a moment, a bug): a temporary error
        the client retries, never aiosmtpd's "500 Error: (<exception text>)", which both leaks
        internals and, being permanent, would bounce mail."""
        peer = self.session.peer if self.session is not None else None
        log.error("%r SMTP command failed: %s: %s", peer, type(error).__name__, str(error).splitlines()[:1],
                  exc_info=not isinstance(error, ConnectionError))
        return "451 4.3.0 Temporary server error, try again later"

    @syntax("RCPT TO: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_RCPT(self, arg: str | None) -> None:
        # RFC 5321 4.1.1.3 / 4.5.1: "RCPT TO:<Postmaster>" (no domain) must be accepted; it
        # means this server's postmaster, i.e. postmaster@<our hostname> (routed like any
        # postmaster@, see directory/routing.py).
        m = _BARE_POSTMASTER.fullmatch(arg or "")
        if m is not None:
            arg = f"TO:<postmaster@{self.hostname}>{m.group(1)}"
        await super().smtp_RCPT(arg)

    async def smtp_AUTH(self, arg: str) -> None:
        if not self.offer_auth:
            await self.push("503 5.5.1 AUTH is not available on this port (use submission)")
            return
        if not self.tls_active and self._auth_require_tls:
            await self.push("538 5.7.11 Encryption required: issue STARTTLS first")
            return
        await super().smtp_AUTH(arg)

    async def smtp_MAIL(self, arg: str | None) -> None:
        """Strip our private XSAVESENT parameter (submission) before aiosmtpd sees it."""
        save_sent = False
        if arg and self.offer_auth:
            parts = arg.split()
            kept = [p for p in parts if p.upper() != "XSAVESENT"]
            if len(kept) != len(parts):
                save_sent = True
                arg = " ".join(kept)
        had_sender = bool(self.envelope is not None and self.envelope.mail_from)
        await super().smtp_MAIL(arg)
        if save_sent and not had_sender and self.envelope is not None and self.envelope.mail_from:
            self.envelope.mw_save_sent = True  # type: ignore[attr-defined]

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        if await self.check_helo_needed():
            return
        if await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 5.5.1 Error: need RCPT command")
            return
        if arg:
            await self.push("501 5.5.4 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        try:
            async with asyncio.timeout(self.limits.data_timeout):
                body, problem = await self._read_data()
        except TimeoutError:
            await self._hang_up("421 4.4.2 Timeout during DATA, closing connection")
            return
        if problem is not None:
            self._set_post_data_state()
            await self.push(problem)
            return
        self.envelope.content = body
        self.envelope.original_content = body
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push("250 2.0.0 OK" if not isinstance(status, str) else status)

    async def _read_data(self) -> tuple[bytes, str | None]:
        """Read up to CRLF.CRLF; returns (content, None) or (b"", error reply).

        One search for ``CRLF .`` finds both the end and any dot-stuffed line, so a message
        without stuffed lines (nearly all) is never scanned again for unstuffing."""
        reader = self._reader
        buf = bytearray(b"\r\n")  # a virtual line start: ".\r\n" right after DATA ends it too
        discarded = 0
        limit = self.data_size_limit or 0
        pos = 0  # where the next search for CRLF "." starts
        stuffed = False  # a line began with "." (to be unstuffed)
        while True:
            chunk = await reader.read(_CHUNK)
            if not chunk:
                raise ConnectionResetError("connection closed during DATA")
            self._reset_timeout()
            buf += chunk
            end = -1
            while True:
                i = buf.find(b"\r\n.", pos)
                if i < 0:
                    pos = max(pos, len(buf) - 2)
                    break
                if len(buf) < i + 5:  # "CRLF ." at the very end: more bytes decide what it is
                    pos = i
                    break
                if buf[i + 3] == 13 and buf[i + 4] == 10:  # CRLF . CRLF
                    end = i
                    break
                stuffed = True
                pos = i + 3
            if end >= 0:
                leftover = buf[end + 5:]
                if leftover:  # pipelined commands after the dot go back to the command reader
                    reader._buffer[:0] = leftover  # type: ignore[attr-defined]
                del buf[end + 2:]
                break
            if limit and discarded + len(buf) - 2 > limit:  # too big: keep only the unsearched tail
                discarded += pos
                del buf[:pos]
                pos = 0
        if discarded:
            return b"", "552 5.3.4 Message size exceeds fixed maximum message size"
        if limit and len(buf) - 2 > limit:
            return b"", "552 5.3.4 Message size exceeds fixed maximum message size"
        max_line = self.limits.max_line_length
        lines = buf.split(b"\r\n")  # once: the line-length check and the bare-LF test share it
        if len(buf) > max_line and max(map(len, lines)) > max_line:
            return b"", f"500 5.5.6 Line too long (more than {max_line} octets)"
        bare_lf = buf.count(b"\n") != len(lines) - 1
        data = (bytes(buf).replace(b"\r\n.", b"\r\n") if stuffed else bytes(buf))[2:]
        if bare_lf:
            data = _BARE_LF.sub(b"\r\n", data)
        return data, None


def _is_loopback(ip: str) -> bool:
    return ip.startswith("127.") or ip in ("::1", "::ffff:127.0.0.1")

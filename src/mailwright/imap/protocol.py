"""The IMAP wire reader: one command = a line plus any literals it announces (RFC 9051 §4.3,
RFC 7888 LITERAL+), bounded so a client can never make us buffer without limit.

Decisions (as Dovecot does):
* A line longer than `max_line` is discarded up to its CRLF and the command gets BAD.
* A synchronising literal over the limit is refused before the client sends it
  (`NO [TOOBIG]` for APPEND, BAD otherwise); nothing of it is read.
* A non-synchronising literal (`{n+}`) over the limit cannot be refused before it arrives;
  RFC 7888 §4 lets the server reject it and close the connection, which is what we do (BYE).
* A whole command (line + literals) is bounded by `max_command`.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

_LITERAL_AT_END = re.compile(rb"~?\{(\d{1,20})(\+?)\}\r?\n\Z")


@dataclass
class Rejected:
    """A command that could not be read whole: `close` means the connection must end."""

    head: bytes  # the first line (for the tag)
    reason: str  # "line" | "toobig" | "toobig-nonsync" | "answered" (a precheck already replied)
    close: bool = False


@dataclass
class Limits:
    max_line: int = 64 * 1024
    max_literal: int = 50 * 1024 * 1024
    max_command: int = 200 * 1024 * 1024


async def _discard_line(reader: asyncio.StreamReader) -> bytes:
    """Skip to the end of an over-long line; returns its first bytes (for the tag)."""
    head = b""
    while True:
        try:
            last = await reader.readuntil(b"\n")
            return head or last[:200]
        except asyncio.LimitOverrunError as e:
            chunk = await reader.readexactly(max(e.consumed, 1))
            head = head or chunk[:200]


async def read_line(reader: asyncio.StreamReader) -> bytes | None:
    """One CRLF-terminated line (for AUTHENTICATE and IDLE's DONE); None if it was too long."""
    try:
        return await reader.readuntil(b"\n")
    except asyncio.LimitOverrunError:
        await _discard_line(reader)
        return None


Precheck = Callable[[bytes, int], Awaitable[bytes | None]]


async def read_command(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, limits: Limits,
                       precheck: Precheck | None = None) -> bytes | Rejected:
    """The next command, literals included verbatim as they came over the wire.

    Before asking for a synchronising literal, `precheck(command so far, literal size)` may
    answer the command instead (APPEND to a missing mailbox gets NO [TRYCREATE] without the
    client sending the message, as Dovecot does)."""
    buf = bytearray()
    head = b""
    while True:
        try:
            line = await reader.readuntil(b"\n")
        except asyncio.LimitOverrunError:
            first = await _discard_line(reader)
            return Rejected(head or first or b"*", "line")
        if not head:
            head = line[:200]
        if len(line) > limits.max_line:
            return Rejected(head, "line")
        buf += line
        m = _LITERAL_AT_END.search(line)
        if m is None:
            return bytes(buf)
        size = int(m.group(1))
        nonsync = bool(m.group(2))
        if size > limits.max_literal or len(buf) + size > limits.max_command:
            if nonsync:
                return Rejected(head, "toobig-nonsync", close=True)
            return Rejected(head, "toobig")
        if not nonsync:
            if precheck is not None:
                answer = await precheck(bytes(buf[: len(buf) - len(m.group(0))]), size)
                if answer is not None:
                    writer.write(answer)
                    await writer.drain()
                    return Rejected(head, "answered")
            writer.write(b"+ OK\r\n")
            await writer.drain()
        buf += await reader.readexactly(size)

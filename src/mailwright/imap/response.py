"""Formatting helpers for server responses: strings, flags, dates, mailbox names."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from mailwright.imap import mutf7

_SYSTEM_ORDER = ["\\answered", "\\flagged", "\\deleted", "\\seen", "\\draft"]
_QSAFE = re.compile(r'^[\x20\x21\x23-\x5b\x5d-\x7e]*$')
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def flags_text(flags: str) -> str:
    """Stored flags in Dovecot's order: system flags first (fixed order), then keywords."""
    if not flags:
        return "()"
    items = flags.split()
    sysf = sorted((f for f in items if f.startswith("\\")),
                  key=lambda f: _SYSTEM_ORDER.index(f.lower()) if f.lower() in _SYSTEM_ORDER else 9)
    kw = [f for f in items if not f.startswith("\\")]
    return "(" + " ".join(sysf + kw) + ")"


def astring_out(s: str) -> bytes:
    """A string as a quoted string when that is safe, else a literal."""
    if _QSAFE.match(s) and len(s) < 1024:
        return b'"' + s.replace("\\", "\\\\").replace('"', '\\"').encode() + b'"'
    b = s.encode("utf-8", "surrogateescape")
    return b"{%d}\r\n" % len(b) + b


def quoted(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def literal(b: bytes) -> bytes:
    return b"{%d}\r\n" % len(b) + b


def internaldate(d: datetime) -> str:
    if d.tzinfo is None:
        d = d.replace(tzinfo=UTC)
    d = d.astimezone(UTC)
    return f'"{d.day:02d}-{MONTHS[d.month - 1]}-{d.year:04d} {d.hour:02d}:{d.minute:02d}:{d.second:02d} +0000"'


_ATOM = re.compile(r'^[\x21\x23\x24\x26-\x27\x2b-\x5b\x5e-\x7a\x7c\x7e]+$')


def mailbox_out(name: str, utf8: bool) -> bytes:
    """A mailbox name on the wire: modified UTF-7 unless the client enabled UTF-8; an atom when
    it can be one (as Dovecot's imap_append_astring), else quoted or a literal."""
    wire = name if utf8 else mutf7.encode(name)
    if _ATOM.match(wire) and wire.upper() != "NIL":
        return wire.encode()
    return astring_out(wire)


def mailbox_in(raw: str, utf8: bool) -> str:
    """A client's mailbox name to our UTF-8 form (ValueError if it is not valid mUTF-7)."""
    if utf8:
        return raw
    if any(ord(c) > 0x7E for c in raw):  # 8-bit from a client that did not ENABLE UTF8: take it as UTF-8
        return raw
    return mutf7.decode(raw)


def parse_date(text: str) -> datetime | None:
    """date = d-Mon-yyyy (search keys)."""
    m = re.match(r"^(\d{1,2})-([A-Za-z]{3})-(\d{4})$", text)
    if not m:
        return None
    mon = m.group(2).capitalize()
    if mon not in MONTHS:
        return None
    try:
        return datetime(int(m.group(3)), MONTHS.index(mon) + 1, int(m.group(1)), tzinfo=UTC)
    except ValueError:
        return None


def parse_datetime(text: str) -> datetime | None:
    """date-time = "dd-Mon-yyyy hh:mm:ss +zzzz" (APPEND)."""
    m = re.match(r"^ ?(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)$", text)
    if not m:
        return None
    mon = m.group(2).capitalize()
    if mon not in MONTHS:
        return None
    from datetime import timedelta, timezone

    try:
        off = timedelta(hours=int(m.group(8)), minutes=int(m.group(9)))
        tz = timezone(off if m.group(7) == "+" else -off)
        d = datetime(int(m.group(3)), MONTHS.index(mon) + 1, int(m.group(1)), int(m.group(4)), int(m.group(5)),
                     int(m.group(6)), tzinfo=tz)
    except ValueError:
        return None
    return d.astimezone(UTC)

"""Column types for text that came out of a message: storable on SQLite and PostgreSQL alike.

Parsing keeps raw 8-bit header bytes as lone surrogates (Python's surrogateescape) so that the
IMAP wire form is `text.encode("utf-8", "surrogateescape")`, byte for byte what the message
said; a NUL may survive too. Neither can be stored: SQLite's driver encodes strictly and
PostgreSQL refuses both in `text`. Without these types such a message could never be accepted.

- `WireText` (ENVELOPE, BODYSTRUCTURE, BODY: literal lengths inside count the original bytes)
  escapes reversibly with U+F8FF (private use): U+F8FF -> U+F8FF U+F8FF, surrogate U+DC00+b ->
  U+F8FF U+F700+b, NUL -> U+F8FF U+F600. Text without any of the three is stored unchanged, so
  ordinary messages pay one regex scan on write and one substring test on read.
- `CleanText` (subject, addresses, preview, search text: for humans and SEARCH) replaces what
  cannot be stored with U+FFFD; nothing depends on their exact bytes.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import Text
from sqlalchemy.types import TypeDecorator

_ESC = "\uf8ff"
_NEEDS_ESCAPE = re.compile("[\uf8ff\x00\udc00-\udfff]")
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_ESCAPED = re.compile("\uf8ff(.)", re.S)


def _escape_char(m: re.Match[str]) -> str:
    c = m.group(0)
    if c == _ESC:
        return _ESC + _ESC
    if c == "\x00":
        return _ESC + "\uf600"
    return _ESC + chr(0xF700 + (ord(c) - 0xDC00) % 256)


def _unescape_char(m: re.Match[str]) -> str:
    c = m.group(1)
    if c == _ESC:
        return _ESC
    if c == "\uf600":
        return "\x00"
    return chr(0xDC00 + ord(c) - 0xF700)


def escape_wire(value: str) -> str:
    if value.isascii() and "\x00" not in value:  # O(1) + memchr: the common case, no regex scan
        return value
    return _NEEDS_ESCAPE.sub(_escape_char, value) if _NEEDS_ESCAPE.search(value) else value


def unescape_wire(value: str) -> str:
    return _ESCAPED.sub(_unescape_char, value) if _ESC in value else value


def clean_text(value: str) -> str:
    # isascii() is O(1) in CPython, and in ASCII text only NUL can be unstorable: the regex
    # scan below costs ~1 ms per 100 KB of search text, on every delivery.
    if value.isascii():
        return value.replace("\x00", "\ufffd") if "\x00" in value else value
    return _UNSTORABLE.sub("\ufffd", value) if _UNSTORABLE.search(value) else value


class WireText(TypeDecorator[str]):
    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Any) -> str | None:
        return escape_wire(value) if value is not None else None

    def process_result_value(self, value: str | None, dialect: Any) -> str | None:
        return unescape_wire(value) if value is not None else None


class CleanText(TypeDecorator[str]):
    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Any) -> str | None:
        return clean_text(value) if value is not None else None

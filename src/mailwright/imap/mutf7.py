"""Modified UTF-7 mailbox names (RFC 3501 §5.1.3), used until a client ENABLEs UTF8=ACCEPT or
IMAP4rev2; after that names travel as UTF-8. Names are stored as UTF-8 in the database.

Decoding is lenient about what a client sends only where the result is unambiguous; a malformed
name raises InvalidName. It is a ValueError (callers that check names catch it and answer BAD)
and a ParseError too, so wherever a name or pattern is decoded without a check of its own (LIST
reference and patterns) the command still gets a clean BAD instead of an internal error.
RFC 3501 5.1.3 only says names are modified UTF-7, not whether a name that is not gets BAD or
NO; Dovecot answers LIST with such a pattern OK (no match) and CREATE/SELECT of such a name NO.
"""

from __future__ import annotations

import base64

from mailwright.imap.parser import ParseError


class InvalidName(ParseError, ValueError):
    """A mailbox name or pattern that is not valid modified UTF-7."""


def encode(name: str) -> str:
    out: list[str] = []
    buf: list[str] = []

    def flush() -> None:
        if buf:
            b = "".join(buf).encode("utf-16-be")
            out.append("&" + base64.b64encode(b).decode().rstrip("=").replace("/", ",") + "-")
            buf.clear()

    for ch in name:
        o = ord(ch)
        if 0x20 <= o <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            buf.append(ch)
    flush()
    return "".join(out)


def decode(name: str) -> str:
    out: list[str] = []
    i = 0
    n = len(name)
    while i < n:
        ch = name[i]
        if ord(ch) < 0x20:
            raise InvalidName("control character in mailbox name")
        if ord(ch) > 0x7E:
            raise InvalidName("non-ASCII in modified UTF-7 name")
        if ch != "&":
            out.append(ch)
            i += 1
            continue
        j = name.find("-", i + 1)
        if j < 0:
            raise InvalidName("unterminated modified UTF-7 shift")
        chunk = name[i + 1 : j]
        if not chunk:
            out.append("&")
        else:
            b64 = chunk.replace(",", "/")
            b64 += "=" * (-len(b64) % 4)
            try:
                raw = base64.b64decode(b64, validate=True)
                text = raw.decode("utf-16-be")
            except (ValueError, UnicodeDecodeError) as e:
                raise InvalidName("bad modified UTF-7") from e
            if any(0x20 <= ord(c) <= 0x7E for c in text):
                raise InvalidName("printable ASCII must not be base64-encoded")
            out.append(text)
        i = j + 1
    return "".join(out)

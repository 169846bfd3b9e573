"""Modified UTF-7 mailbox names (RFC 3501 §5.1.3), used until a client ENABLEs UTF8=ACCEPT or
IMAP4rev2; after that names travel as UTF-8. Names are stored as UTF-8 in the database.

Decoding is lenient about what a client sends only where the result is unambiguous; a malformed
name raises ValueError and the command gets BAD, as Dovecot answers.
"""

from __future__ import annotations

import base64


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
        if ord(ch) > 0x7E or ord(ch) < 0x20:
            raise ValueError("non-ASCII in modified UTF-7 name")
        if ch != "&":
            out.append(ch)
            i += 1
            continue
        j = name.find("-", i + 1)
        if j < 0:
            raise ValueError("unterminated modified UTF-7 shift")
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
                raise ValueError("bad modified UTF-7") from e
            if any(0x20 <= ord(c) <= 0x7E for c in text):
                raise ValueError("printable ASCII must not be base64-encoded")
            out.append(text)
        i = j + 1
    return "".join(out)

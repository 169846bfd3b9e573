"""FETCH attributes (RFC 9051 §6.4.5, RFC 3516 BINARY, RFC 7162 MODSEQ): parsing and rendering.

Metadata (FLAGS, INTERNALDATE, RFC822.SIZE, ENVELOPE, BODY, BODYSTRUCTURE) comes straight from
the columns computed at delivery; the blob is read only for body sections. A section that does
not exist is answered with an empty string (as Dovecot does, RFC 9051 leaves it open).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mailwright.imap.parser import ParseError, Token
from mailwright.imap.response import flags_text, internaldate, literal
from mailwright.mailstore.mime import fetch_binary, fetch_section

_MACROS = {
    "ALL": ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"],
    "FAST": ["FLAGS", "INTERNALDATE", "RFC822.SIZE"],
    "FULL": ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"],
}
_SIMPLE = {"UID", "FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODYSTRUCTURE", "BODY", "MODSEQ",
           "RFC822", "RFC822.HEADER", "RFC822.TEXT"}
_ATTR_RE = re.compile(r"^(BODY|BODY\.PEEK|BINARY|BINARY\.PEEK|BINARY\.SIZE)\[([^\]]*)\](?:<(\d{1,10})\.(\d{1,10})>)?$",
                      re.I)
_SECTION_RE = re.compile(
    r"^(?:(?P<part>[1-9]\d{0,5}(?:\.[1-9]\d{0,5}){0,30}))?(?:(?(part)\.)(?P<text>HEADER\.FIELDS\.NOT|HEADER\.FIELDS"
    r"|HEADER|TEXT|MIME))?(?: \((?P<fields>[^()]*)\))?$", re.I)
_BINARY_SECTION_RE = re.compile(r"^(?:[1-9]\d{0,5}(?:\.[1-9]\d{0,5}){0,30})?$")
_FIELD_RE = re.compile(r"^[\x21\x23-\x39\x3b-\x7e]+$")
_FIELDS_RE = re.compile(r'"[^"\\]*"|[^\s"]+')


@dataclass(frozen=True, slots=True)
class Item:
    kind: str  # UID FLAGS ... | SECTION | BINARY | BINARY.SIZE
    section: str = ""  # as sent back, e.g. "HEADER.FIELDS (FROM TO)"
    partial: tuple[int, int] | None = None
    peek: bool = True
    lookup: str | None = None  # section for mime.fetch_section when it differs (quoted field names)


def _section(spec: str) -> str:
    m = _SECTION_RE.match(spec)
    if m is None:
        raise ParseError("invalid section")
    text = (m.group("text") or "").upper()
    fields = m.group("fields")
    if text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
        names = _FIELDS_RE.findall(fields or "")
        if not names or "".join(names).replace(" ", "") != (fields or "").replace(" ", ""):
            raise ParseError("invalid header field list")
        for n in names:
            bare = n[1:-1] if n.startswith('"') else n
            if not bare or not _FIELD_RE.match(bare):
                raise ParseError("invalid header field name")
        return ((m.group("part") + ".") if m.group("part") else "") + text + " (" + " ".join(
            n.upper() for n in names) + ")"
    if fields is not None:
        raise ParseError("unexpected field list")
    if text == "MIME" and not m.group("part"):
        raise ParseError("MIME needs a part number")
    part = m.group("part") or ""
    return part + ("." if part and text else "") + text


def _item(tok: Token) -> list[Item]:
    if not isinstance(tok, str):
        raise ParseError("invalid fetch attribute")
    up = tok.upper()
    if up in _SIMPLE:
        if up == "RFC822":
            return [Item("RFC822", peek=False)]
        if up == "RFC822.TEXT":
            return [Item("RFC822.TEXT", peek=False)]
        return [Item(up)]
    m = _ATTR_RE.match(tok)
    if m is None:
        raise ParseError(f"unknown fetch attribute {tok[:40]}")
    name = m.group(1).upper()
    partial = (int(m.group(3)), int(m.group(4))) if m.group(3) is not None else None
    if partial is not None and partial[1] == 0:
        raise ParseError("partial length must not be 0")
    if name.startswith("BINARY"):
        spec = m.group(2).strip()
        if not _BINARY_SECTION_RE.match(spec):
            raise ParseError("invalid binary section")
        if name == "BINARY.SIZE":
            if partial is not None:
                raise ParseError("BINARY.SIZE takes no partial")
            return [Item("BINARY.SIZE", spec)]
        return [Item("BINARY", spec, partial, peek=name == "BINARY.PEEK")]
    sec = _section(m.group(2))
    lookup = sec.replace('"', "") if '"' in sec else None
    return [Item("SECTION", sec, partial, peek=name == "BODY.PEEK", lookup=lookup)]


def parse_items(tok: Token) -> list[Item]:
    if isinstance(tok, str) and tok.upper() in _MACROS:
        return [Item(n) for n in _MACROS[tok.upper()]]
    if isinstance(tok, list):
        if not tok:
            raise ParseError("empty fetch attribute list")
        out: list[Item] = []
        for t in tok:
            out.extend(_item(t))
        return out
    return _item(tok)


def columns_for(items: list[Item]) -> list[str]:
    cols: list[str] = []
    for it in items:
        c = {"INTERNALDATE": "internal_date", "RFC822.SIZE": "size", "ENVELOPE": "envelope",
             "BODYSTRUCTURE": "bodystructure", "BODY": "body"}.get(it.kind)
        if c is None and it.kind in ("SECTION", "BINARY", "BINARY.SIZE", "RFC822", "RFC822.HEADER", "RFC822.TEXT"):
            c = "blob_hash"
        if c and c not in cols:
            cols.append(c)
    return cols


def needs_blob(items: list[Item]) -> bool:
    return "blob_hash" in columns_for(items)


def sets_seen(items: list[Item]) -> bool:
    return any(not it.peek for it in items)


def _partial(data: bytes, p: tuple[int, int] | None) -> bytes:
    if p is None:
        return data
    return data[p[0] : p[0] + p[1]]


def _literal_any(data: bytes) -> bytes:
    """BINARY content with NUL goes out as a literal8 (RFC 3516)."""
    if b"\x00" in data:
        return b"~{%d}\r\n" % len(data) + data
    return literal(data)


class UnknownCte(Exception):
    pass


def _binary(raw: bytes, section: str) -> bytes:
    """BINARY content; a part that does not exist is empty (as Dovecot answers), an unknown
    Content-Transfer-Encoding raises UnknownCte (RFC 3516: NO [UNKNOWN-CTE])."""
    data = fetch_binary(raw, section)
    if data is not None:
        return data
    if fetch_section(raw, section) is None:
        return b""
    raise UnknownCte(section)


def render(items: list[Item], seq: int, uid: int, modseq: int, flags: str, cols: dict[str, object],
           raw: bytes | None, *, with_uid: bool, with_modseq: bool) -> bytes:
    """One `* n FETCH (...)` response. `cols` maps column names to values for this message."""
    parts: list[bytes] = []
    seen_uid = False
    if with_uid:
        parts.append(b"UID %d" % uid)
        seen_uid = True
    seen_modseq = False
    for it in items:
        k = it.kind
        if k == "UID":
            if not seen_uid:
                parts.append(b"UID %d" % uid)
                seen_uid = True
        elif k == "FLAGS":
            parts.append(b"FLAGS " + flags_text(flags).encode())
        elif k == "MODSEQ":
            if not seen_modseq:
                parts.append(b"MODSEQ (%d)" % modseq)
                seen_modseq = True
        elif k == "INTERNALDATE":
            parts.append(b"INTERNALDATE " + internaldate(cols["internal_date"]).encode())  # type: ignore[arg-type]
        elif k == "RFC822.SIZE":
            parts.append(b"RFC822.SIZE %d" % int(cols["size"]))  # type: ignore[call-overload]
        elif k == "ENVELOPE":
            parts.append(b"ENVELOPE " + str(cols["envelope"]).encode("utf-8", "surrogateescape"))
        elif k == "BODYSTRUCTURE":
            parts.append(b"BODYSTRUCTURE " + str(cols["bodystructure"]).encode("utf-8", "surrogateescape"))
        elif k == "BODY":
            parts.append(b"BODY " + str(cols["body"]).encode("utf-8", "surrogateescape"))
        else:
            assert raw is not None
            if k == "RFC822":
                parts.append(b"RFC822 " + literal(fetch_section(raw, "") or b""))
            elif k == "RFC822.HEADER":
                parts.append(b"RFC822.HEADER " + literal(fetch_section(raw, "HEADER") or b""))
            elif k == "RFC822.TEXT":
                parts.append(b"RFC822.TEXT " + literal(fetch_section(raw, "TEXT") or b""))
            elif k == "SECTION":
                data = fetch_section(raw, it.lookup or it.section)
                label = b"BODY[" + it.section.encode() + b"]"
                if it.partial is not None:
                    label += b"<%d>" % it.partial[0]
                if data is None:
                    parts.append(label + b' ""')
                else:
                    parts.append(label + b" " + literal(_partial(data, it.partial)))
            elif k == "BINARY":
                data = _binary(raw, it.section)
                label = b"BINARY[" + it.section.encode() + b"]"
                if it.partial is not None:
                    label += b"<%d>" % it.partial[0]
                parts.append(label + b" " + _literal_any(_partial(data, it.partial)))
            elif k == "BINARY.SIZE":
                data = _binary(raw, it.section)
                parts.append(b"BINARY.SIZE[" + it.section.encode() + b"] %d" % len(data))
    if with_modseq and not seen_modseq:
        parts.append(b"MODSEQ (%d)" % modseq)
    return b"* %d FETCH (" % seq + b" ".join(parts) + b")\r\n"


_MONTHS_B = [m.encode() for m in ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")]


def _idate(v: object) -> bytes:
    """INTERNALDATE from a datetime, or from SQLite's text form 'YYYY-MM-DD HH:MM:SS[.ffffff]'."""
    if isinstance(v, str) and len(v) >= 19 and v[4] == "-":
        return b'INTERNALDATE "%s-%s-%s %s +0000"' % (
            v[8:10].encode(), _MONTHS_B[int(v[5:7]) - 1], v[0:4].encode(), v[11:19].encode())
    if isinstance(v, datetime):
        return b"INTERNALDATE " + internaldate(v).encode()
    return b'INTERNALDATE "01-Jan-1970 00:00:00 +0000"'


def meta_plan(items: list[Item], cols: list[str], *, with_uid: bool, with_modseq: bool
              ) -> Callable[[Sequence[Any], int], bytes] | None:
    """A specialised renderer for FETCHes that need no blob (the full-sync hot path): rows are
    (uid, modseq, flags, *cols); flag lists are formatted once per distinct value."""
    if any(it.kind not in ("UID", "FLAGS", "MODSEQ", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODYSTRUCTURE",
                           "BODY") for it in items):
        return None
    steps: list[tuple[str, int]] = []
    seen: set[str] = set()
    if with_uid:
        steps.append(("UID", 0))
        seen.add("UID")
    for it in items:
        if it.kind in ("UID", "MODSEQ") and it.kind in seen:
            continue
        seen.add(it.kind)
        col = {"INTERNALDATE": "internal_date", "RFC822.SIZE": "size", "ENVELOPE": "envelope",
               "BODYSTRUCTURE": "bodystructure", "BODY": "body"}.get(it.kind)
        steps.append((it.kind, 3 + cols.index(col) if col else 0))
    if with_modseq and "MODSEQ" not in seen:
        steps.append(("MODSEQ", 0))
    flag_cache: dict[str, bytes] = {}

    def one(r: Sequence[Any], seq: int) -> bytes:
        out = []
        for kind, i in steps:
            if kind == "UID":
                out.append(b"UID %d" % r[0])
            elif kind == "FLAGS":
                f = r[2]
                b = flag_cache.get(f)
                if b is None:
                    b = flag_cache[f] = b"FLAGS " + flags_text(f).encode()
                out.append(b)
            elif kind == "MODSEQ":
                out.append(b"MODSEQ (%d)" % r[1])
            elif kind == "INTERNALDATE":
                out.append(_idate(r[i]))
            elif kind == "RFC822.SIZE":
                out.append(b"RFC822.SIZE %d" % r[i])
            else:
                out.append(kind.encode() + b" " + r[i].encode("utf-8", "surrogateescape"))
        return b"* %d FETCH (" % seq + b" ".join(out) + b")\r\n"

    return one

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
from mailwright.mailstore.mime import UndecodableContent, fetch_binary, fetch_section
from mailwright.storage.texttypes import unescape_wire

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
    """The attributes of a FETCH; parsed once per distinct spelling (clients repeat the same few)."""
    key: str | tuple[str, ...] | None = None
    if isinstance(tok, str):
        key = tok
    elif isinstance(tok, list) and all(isinstance(t, str) for t in tok):
        key = tuple(t for t in tok if isinstance(t, str))
    if key is not None:
        hit = _PARSED.get(key)
        if hit is not None:
            return hit
    items = _parse_items(tok)
    if key is not None and len(_PARSED) < 1024:
        _PARSED[key] = items
    return items


_PARSED: dict[str | tuple[str, ...], list[Item]] = {}


def _parse_items(tok: Token) -> list[Item]:
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
    """The message columns these attributes need (cached: the same few lists come again and again)."""
    key = tuple(items)
    cols = _COLUMNS.get(key)
    if cols is None:
        cols = _columns_for(items)
        if len(_COLUMNS) < 1024:
            _COLUMNS[key] = cols
    return list(cols)


_COLUMNS: dict[tuple[Item, ...], list[str]] = {}


def _columns_for(items: list[Item]) -> list[str]:
    cols: list[str] = []
    for it in items:
        c = {"INTERNALDATE": "internal_date", "RFC822.SIZE": "size", "ENVELOPE": "envelope",
             "BODYSTRUCTURE": "bodystructure", "BODY": "body"}.get(it.kind)
        if c is None and it.kind in ("SECTION", "BINARY", "BINARY.SIZE", "RFC822", "RFC822.HEADER", "RFC822.TEXT"):
            c = "blob_hash"
        if c and c not in cols:
            cols.append(c)
    if "blob_hash" in cols:
        cols += [c for c in ("raw_size", "vsize") if c not in cols]
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
    """RFC 3516: NO [UNKNOWN-CTE] Unknown Content-Transfer-Encoding."""


class CorruptContent(Exception):
    """Base64/quoted-printable that does not decode: NO [PARSE] Invalid data in MIME part (Dovecot's
    answer; RFC 3516 leaves it open)."""


def _binary(raw: bytes, section: str) -> bytes:
    """BINARY content; a part that does not exist is empty (as Dovecot answers), an unknown
    Content-Transfer-Encoding raises UnknownCte (RFC 3516: NO [UNKNOWN-CTE]), corrupt encoded
    data CorruptContent (NO [PARSE], as Dovecot)."""
    try:
        data = fetch_binary(raw, section, check=True)
    except UndecodableContent as e:
        raise CorruptContent(section) from e
    if data is not None:
        return data
    if fetch_section(raw, section) is None:
        return b""
    raise UnknownCte(section)


_CR_CR_LF = re.compile(rb"\r\r\n")  # re's literal search is ~2x faster than `in` here (memchr on CR)


def whole(raw: bytes, cols: dict[str, object]) -> bytes:
    """``BODY[]`` / ``RFC822``: what ``fetch_section(raw, "")`` returns, without its two full
    counting passes when the stored sizes already show the blob is clean CRLF.

    RFC822.SIZE (vsize) is ``len + bare LFs - CR CR LFs``, so vsize == size with no ``CR CR LF``
    means no bare LF either: serving normalises nothing and the blob goes out as stored
    (NUL still becomes 0x80, as mime.fetch_section does)."""
    if cols.get("vsize") == cols.get("raw_size") == len(raw) and _CR_CR_LF.search(raw) is None:
        return raw.replace(b"\x00", b"\x80") if b"\x00" in raw else raw
    return fetch_section(raw, "") or b""


def render(items: list[Item], seq: int, uid: int, modseq: int, flags: str, cols: dict[str, object],
           raw: bytes | None, *, with_uid: bool, with_modseq: bool) -> bytes:
    """One `* n FETCH (...)` response. `cols` maps column names to values for this message."""
    parts: list[bytes | tuple[bytes, bytes]] = []  # a tuple: a literal's head and its data (not copied twice)
    seen_uid = False
    if with_uid:
        parts.append(b"UID %d" % uid)
        seen_uid = True
    seen_modseq = False
    corrupt: CorruptContent | None = None
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
                data = whole(raw, cols)
                parts.append((b"RFC822 {%d}\r\n" % len(data), data))
            elif k == "RFC822.HEADER":
                parts.append(b"RFC822.HEADER " + literal(fetch_section(raw, "HEADER") or b""))
            elif k == "RFC822.TEXT":
                parts.append(b"RFC822.TEXT " + literal(fetch_section(raw, "TEXT") or b""))
            elif k == "SECTION":
                sec = it.lookup or it.section
                got = whole(raw, cols) if sec == "" else fetch_section(raw, sec)
                label = b"BODY[" + it.section.encode() + b"]"
                if it.partial is not None:
                    label += b"<%d>" % it.partial[0]
                if got is None:
                    parts.append(label + b' ""')
                else:
                    got = _partial(got, it.partial)
                    parts.append((label + b" {%d}\r\n" % len(got), got))
            elif k in ("BINARY", "BINARY.SIZE"):
                try:
                    data = _binary(raw, it.section)
                except CorruptContent as e:
                    corrupt = e  # go on: an unknown CTE in a later item is what gets reported
                    continue
                if k == "BINARY.SIZE":
                    parts.append(b"BINARY.SIZE[" + it.section.encode() + b"] %d" % len(data))
                    continue
                label = b"BINARY[" + it.section.encode() + b"]"
                if it.partial is not None:
                    label += b"<%d>" % it.partial[0]
                parts.append(label + b" " + _literal_any(_partial(data, it.partial)))
    if corrupt is not None:
        raise corrupt
    if with_modseq and not seen_modseq:
        parts.append(b"MODSEQ (%d)" % modseq)
    out = [b"* %d FETCH (" % seq]
    for n, p in enumerate(parts):
        if n:
            out.append(b" ")
        if isinstance(p, tuple):
            out += p
        else:
            out.append(p)
    out.append(b")\r\n")
    return b"".join(out)


_WIRE_ESC = "\uf8ff"  # storage.texttypes' escape character
_MONTHS_S = {f"{n + 1:02d}": m for n, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep",
                                                      "Oct", "Nov", "Dec"))}


def _idate(v: object) -> bytes:
    """INTERNALDATE from a datetime, or from SQLite's text form 'YYYY-MM-DD HH:MM:SS[.ffffff]'."""
    if isinstance(v, str) and len(v) >= 19 and v[4] == "-" and (mon := _MONTHS_S.get(v[5:7])) is not None:
        return f'INTERNALDATE "{v[8:10]}-{mon}-{v[0:4]} {v[11:19]} +0000"'.encode()
    if isinstance(v, datetime):
        return b"INTERNALDATE " + internaldate(v).encode()
    return b'INTERNALDATE "01-Jan-1970 00:00:00 +0000"'


_META = frozenset(("UID", "FLAGS", "MODSEQ", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODYSTRUCTURE", "BODY"))


def metadata_only(items: list[Item]) -> bool:
    return all(it.kind in _META for it in items)


def meta_plan(items: list[Item], cols: list[str], *, with_uid: bool, with_modseq: bool, escaped: bool = False
              ) -> Callable[[Sequence[Any], int], bytes] | None:
    """A specialised renderer for FETCHes that need no blob (the full-sync hot path): rows are
    (uid, modseq, flags, *cols); flag lists are formatted once per distinct value. With
    `escaped`, ENVELOPE/BODYSTRUCTURE/BODY come as stored (imapview.meta_rows) and the rare
    WireText escape is undone here, where the text is encoded anyway."""
    if not metadata_only(items):
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

    def flags(r: Sequence[Any]) -> bytes:
        f = r[2]
        b = flag_cache.get(f)
        if b is None:
            b = flag_cache[f] = b"FLAGS " + flags_text(f).encode()
        return b

    def text(label: bytes, i: int) -> Callable[[Sequence[Any]], bytes]:
        def go(r: Sequence[Any]) -> bytes:
            v = r[i]
            if escaped and _WIRE_ESC in v:
                v = unescape_wire(v)
            return label + v.encode("utf-8", "surrogateescape")
        return go

    # One small function per attribute, chosen once (not a chain of comparisons per row).
    fns: list[Callable[[Sequence[Any]], bytes]] = []
    for kind, i in steps:
        if kind == "UID":
            fns.append(lambda r: b"UID %d" % r[0])
        elif kind == "FLAGS":
            fns.append(flags)
        elif kind == "MODSEQ":
            fns.append(lambda r: b"MODSEQ (%d)" % r[1])
        elif kind == "INTERNALDATE":
            fns.append(lambda r, i=i: _idate(r[i]))  # type: ignore[misc]
        elif kind == "RFC822.SIZE":
            fns.append(lambda r, i=i: b"RFC822.SIZE %d" % r[i])  # type: ignore[misc]
        else:
            fns.append(text(kind.encode() + b" ", i))

    def one(r: Sequence[Any], seq: int) -> bytes:
        return b"* %d FETCH (%b)\r\n" % (seq, b" ".join([fn(r) for fn in fns]))

    return one

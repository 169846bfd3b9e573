"""SEARCH keys (RFC 9051 §6.4.4, RFC 7162 MODSEQ, RFC 5182 `$`): parsing and evaluation.

Evaluation runs over the session's snapshot with one column-selected query for what the keys
need; header keys (FROM/TO/CC/BCC/SUBJECT/HEADER) and SENTBEFORE/SENTON/SENTSINCE read the
header block of each blob (only when such a key is present); BODY/TEXT use the decoded text
stored at delivery (`Message.search_text`, headers' decoded text + text parts), compared
case-insensitively as Dovecot does (substring, after RFC 2047 decoding). BEFORE/ON/SINCE compare
the UTC date of INTERNALDATE (RFC 9051 leaves the zone to the server); the SENT* keys compare the
date written in the first Date: header, "disregarding time and timezone" (RFC 3501 6.4.4), as
Dovecot does -- the stored sent_date is a UTC instant and can be a day off, so the header is read.
Decision: BODY also matches the decoded Subject/From/To/Cc text stored
with the body text (a superset of Dovecot's answer, never a miss).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from mailwright.imap import seqset
from mailwright.imap.parser import ParseError, Token
from mailwright.imap.response import parse_date
from mailwright.mailstore.mime import message_date

Node = tuple[Any, ...]
_FLAG_KEYS = {
    "ANSWERED": ("\\answered", True), "DELETED": ("\\deleted", True), "DRAFT": ("\\draft", True),
    "FLAGGED": ("\\flagged", True), "SEEN": ("\\seen", True), "UNANSWERED": ("\\answered", False),
    "UNDELETED": ("\\deleted", False), "UNDRAFT": ("\\draft", False), "UNFLAGGED": ("\\flagged", False),
    "UNSEEN": ("\\seen", False),
}
_HDR_KEYS = {"FROM": "from", "TO": "to", "CC": "cc", "BCC": "bcc", "SUBJECT": "subject"}
MAX_KEYS = 1000


_EPOCH_DAY = datetime(1970, 1, 1).date()


class SearchError(Exception):
    """A search that parses but cannot be run (e.g. `$` with nothing saved → empty, not this)."""


@dataclass
class Query:
    root: Node
    charset: str | None = None
    has_modseq: bool = False
    needs: set[str] = field(default_factory=set)


def _s(tok: Token) -> str:
    if isinstance(tok, bytes):
        return tok.decode("utf-8", "replace")
    if isinstance(tok, str):
        return tok
    raise ParseError("expected a string")


class _P:
    def __init__(self, toks: list[Token]) -> None:
        self.toks = toks
        self.i = 0
        self.count = 0
        self.needs: set[str] = set()
        self.has_modseq = False

    def take(self) -> Token:
        if self.i >= len(self.toks):
            raise ParseError("missing search argument")
        t = self.toks[self.i]
        self.i += 1
        return t

    def key(self, toks: list[Token] | None = None) -> Node:
        self.count += 1
        if self.count > MAX_KEYS:
            raise ParseError("search too complex")
        t = self.take()
        if isinstance(t, list):
            sub = _P(t)
            sub.count = self.count
            nodes = [sub.key()]
            while sub.i < len(t):
                nodes.append(sub.key())
            self.count = sub.count
            self.needs |= sub.needs
            self.has_modseq |= sub.has_modseq
            return ("and", nodes)
        if isinstance(t, bytes):
            raise ParseError("unexpected string in search")
        k = t.upper()
        if k in _FLAG_KEYS:
            f, want = _FLAG_KEYS[k]
            return ("flag", f, want)
        if k == "ALL":
            return ("all",)
        if k in ("NEW", "RECENT"):
            return ("none",) if k == "RECENT" else ("flag", "\\seen", False)
        if k == "OLD":
            return ("all",)
        if k in ("KEYWORD", "UNKEYWORD"):
            kw = _s(self.take())
            return ("flag", kw.lower(), k == "KEYWORD")
        if k == "NOT":
            return ("not", self.key())
        if k == "OR":
            a = self.key()
            return ("or", a, self.key())
        if k in ("BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE"):
            d = parse_date(_s(self.take()))
            if d is None:
                raise ParseError("invalid date")
            # SENT*: the date as written in the first Date: header (read from the header block)
            self.needs.add("header" if k.startswith("SENT") else "internal_date")
            return ("date", k, d.date())
        if k in ("LARGER", "SMALLER"):
            n = _s(self.take())
            if not n.isdigit():
                raise ParseError("invalid size")
            self.needs.add("size")
            return ("size", k, int(n))
        if k in _HDR_KEYS:
            self.needs.add("header")
            return ("header", _HDR_KEYS[k], _s(self.take()).casefold())
        if k == "HEADER":
            name = _s(self.take()).lower()
            self.needs.add("header")
            return ("header", name, _s(self.take()).casefold())
        if k in ("BODY", "TEXT"):
            self.needs.add("search_text")
            self.needs.add("header")
            return (k.lower(), _s(self.take()).casefold())
        if k == "UID":
            v = _s(self.take())
            return ("saved",) if v == "$" else ("uid", seqset.parse(v))
        if k == "MODSEQ":
            ms = _s(self.take())
            if not ms.isdigit():  # entry-name entry-type-req come first
                self.take()
                ms = _s(self.take())
            if not ms.isdigit():
                raise ParseError("invalid modseq")
            self.has_modseq = True
            return ("modseq", int(ms))
        if k in ("YOUNGER", "OLDER"):
            n = _s(self.take())
            if not n.isdigit():
                raise ParseError("invalid interval")
            self.needs.add("internal_date")
            return ("within", k, int(n))
        if t == "$":
            return ("saved",)
        if seqset.is_set(t):
            return ("seq", seqset.parse(t))
        raise ParseError(f"unknown search key {k[:40]}")


def parse(toks: list[Token], *, allow_charset: bool = True) -> Query:
    charset = None
    if allow_charset and len(toks) >= 2 and isinstance(toks[0], str) and toks[0].upper() == "CHARSET":
        charset = _s(toks[1]).upper()
        toks = toks[2:]
    if not toks:
        raise ParseError("missing search keys")
    p = _P(toks)
    nodes = [p.key()]
    while p.i < len(toks):
        nodes.append(p.key())
    root: Node = nodes[0] if len(nodes) == 1 else ("and", nodes)
    return Query(root, charset, p.has_modseq, p.needs)


@dataclass(slots=True)
class Msg:
    seq: int
    uid: int
    modseq: int
    flags: frozenset[str]
    size: int = 0
    internal_date: datetime | None = None
    sent_date: datetime | None = None
    text: str = ""
    headers: list[tuple[str, str]] | None = None
    body: str = ""  # search text without the decoded header lines stored in front of it


def _sent_day(m: Msg) -> date:
    """SENTBEFORE/SENTON/SENTSINCE compare the date written in the first Date: header, "disregarding
    time and timezone" (RFC 3501 6.4.4), parsed as Dovecot parses it; none or unparsable counts
    as 1970-01-01 (Dovecot)."""
    for n, v in m.headers or ():
        if n == "date":
            when = message_date(v)
            return when[1] if when is not None else _EPOCH_DAY
    return _EPOCH_DAY


def _header_has(m: Msg, name: str, needle: str) -> bool:
    for n, v in m.headers or ():
        if n == name and (not needle or needle in v):
            return True
    return False


def matches(node: Node, m: Msg, saved: set[int], uid_top: int, count: int) -> bool:
    kind = node[0]
    if kind == "all":
        return True
    if kind == "none":
        return False
    if kind == "flag":
        return (node[1] in m.flags) == node[2]
    if kind == "and":
        return all(matches(n, m, saved, uid_top, count) for n in node[1])
    if kind == "or":
        return matches(node[1], m, saved, uid_top, count) or matches(node[2], m, saved, uid_top, count)
    if kind == "not":
        return not matches(node[1], m, saved, uid_top, count)
    if kind == "date":
        k = node[1]
        if k.startswith("SENT"):
            day = _sent_day(m)
        else:
            day = m.internal_date.date() if m.internal_date is not None else _EPOCH_DAY
        if k.endswith("BEFORE"):
            return day < node[2]
        if k.endswith("ON"):
            return day == node[2]
        return day >= node[2]
    if kind == "size":
        return m.size > node[2] if node[1] == "LARGER" else m.size < node[2]
    if kind == "header":
        return _header_has(m, node[1], node[2])
    if kind == "body":
        return node[1] in m.body
    if kind == "text":
        return node[1] in m.text or any(node[1] in v or node[1] in n for n, v in m.headers or ())
    if kind == "uid":
        return any(a <= m.uid <= b for a, b in seqset.uid_values(node[1], uid_top))
    if kind == "seq":
        for lo, hi in node[1]:
            a = count if lo is None else lo
            b = count if hi is None else hi
            if min(a, b) <= m.seq <= max(a, b):
                return True
        return False
    if kind == "modseq":
        return m.modseq >= node[1]
    if kind == "saved":
        return m.uid in saved
    if kind == "within":
        import time

        if m.internal_date is None:
            return False
        age = time.time() - m.internal_date.timestamp()
        return age <= node[2] if node[1] == "YOUNGER" else age >= node[2]
    return False

"""SORT and THREAD=REFERENCES (RFC 5256) over the columns stored at delivery.

Sort keys use the stored first From/To/Cc addresses' mailbox part (as the ENVELOPE reports it),
the base subject computed by `mime.base_subject` from the first Subject: header, the first Date:
header as Dovecot parses it (`mime.message_date`; INTERNALDATE when missing or unparsable,
RFC 5256 2.2) and INTERNALDATE for ARRIVAL; ties go to the message sequence number, as the RFC
requires. THREAD orders threads and siblings by sent date, a dummy parent as its first child
(date, then number), as Dovecot does.

Decision: for an address with NUL bytes Dovecot sorts by a mailbox its own ENVELOPE does not
show (NUL read as 0x80); we sort by what the ENVELOPE shows (docs/imap-differences.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mailwright.imap.parser import ParseError, Token

SORT_KEYS = {"ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO"}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_criteria(tok: Token) -> list[tuple[str, bool]]:
    if not isinstance(tok, list) or not tok:
        raise ParseError("invalid sort criteria")
    out: list[tuple[str, bool]] = []
    rev = False
    for t in tok:
        if not isinstance(t, str):
            raise ParseError("invalid sort criterion")
        u = t.upper()
        if u == "REVERSE":
            if rev:
                raise ParseError("REVERSE twice")
            rev = True
            continue
        if u not in SORT_KEYS:
            raise ParseError("unknown sort criterion")
        out.append((u, rev))
        rev = False
    if rev or not out:
        raise ParseError("invalid sort criteria")
    return out


def _casemap(s: str) -> str:
    """i;unicode-casemap (RFC 5051), as Dovecot compares base subjects: titlecase, decompose."""
    import unicodedata

    return unicodedata.normalize("NFKD", s.upper())


_ENV_INDEX = {"FROM": 2, "TO": 5, "CC": 6}


def _env_mailbox(envelope: str | None, which: str) -> str:
    """addr-mailbox of the first address of From/To/Cc, read from the stored ENVELOPE (so odd
    addresses sort as Dovecot sorts them, RFC 5256 §2.2: i;ascii-casemap of the mailbox)."""
    from mailwright.imap.parser import ParseError, Tokenizer

    if not envelope:
        return ""
    try:
        env = Tokenizer(envelope.encode("utf-8", "surrogateescape")).token(0)
    except ParseError:
        return ""
    if not isinstance(env, list) or len(env) < 7:
        return ""
    addrs = env[_ENV_INDEX[which]]
    for a in addrs if isinstance(addrs, list) else []:
        if isinstance(a, list) and len(a) == 4 and isinstance(a[2], bytes):
            return a[2].decode("utf-8", "replace").lower()  # a group's name counts too (Dovecot)
    return ""


def _aware(d: datetime | None) -> datetime:
    if d is None:
        return _EPOCH
    return d if d.tzinfo else d.replace(tzinfo=UTC)


@dataclass
class SortRow:
    seq: int
    uid: int
    cols: dict[str, Any]


def _key(r: SortRow, crit: str) -> Any:
    c = r.cols
    if crit == "ARRIVAL":
        return _aware(c["internal_date"])
    if crit == "DATE":
        return _aware(c["sent_date"] or c["internal_date"])
    if crit == "SIZE":
        return int(c["size"])
    if crit == "SUBJECT":
        return _casemap(c["base_subject"] or "")
    if crit in ("FROM", "TO", "CC"):
        return _env_mailbox(c["envelope"], crit)
    if crit == "DISPLAYFROM":
        return (c["from_display"] or c["from_addr"] or "").casefold()
    if crit == "DISPLAYTO":
        return _env_mailbox(c["envelope"], "TO")
    return 0


SORT_COLUMNS = ["internal_date", "sent_date", "size", "base_subject", "from_addr", "from_display", "envelope"]


def sort(rows: list[SortRow], criteria: list[tuple[str, bool]]) -> list[SortRow]:
    out = sorted(rows, key=lambda r: r.seq)
    for crit, rev in reversed(criteria):
        out.sort(key=lambda r, c=crit: _key(r, c), reverse=rev)  # type: ignore[misc]
    return out


THREAD_COLUMNS = ["internal_date", "sent_date", "base_subject", "subject", "message_id_header", "in_reply_to",
                  "references"]


@dataclass(eq=False)
class _C:
    num: int | None = None
    date: datetime = _EPOCH
    subject: str = ""
    is_reply: bool = False
    parent: _C | None = None
    children: list[_C] = field(default_factory=list)


def _is_ancestor(a: _C, b: _C) -> bool:
    x: _C | None = b
    while x is not None:
        if x is a:
            return True
        x = x.parent
    return False


def _link(parent: _C, child: _C) -> None:
    if child.parent is parent or child is parent or _is_ancestor(child, parent):
        return
    if child.parent is not None:
        child.parent.children.remove(child)
    child.parent = parent
    parent.children.append(child)


def thread_references(rows: list[SortRow]) -> str:
    table: dict[str, _C] = {}
    n_anon = 0
    for r in sorted(rows, key=lambda x: x.seq):
        c = r.cols
        mid = c["message_id_header"]
        if not mid or (mid in table and table[mid].num is not None):
            n_anon += 1
            mid = f"\x00{n_anon}"
        cont = table.setdefault(mid, _C())
        cont.num = r.seq if r.uid < 0 else r.uid  # caller passes uid<0 to ask for sequence numbers
        cont.date = _aware(c["sent_date"] or c["internal_date"])
        cont.subject = (c["base_subject"] or "").casefold()
        cont.is_reply = (c["subject"] or "").casefold() != cont.subject
        refs = (c["references"] or "").split() or (c["in_reply_to"] or "").split()[:1]
        prev: _C | None = None
        for ref in refs:
            rc = table.setdefault(ref, _C())
            if prev is not None and rc.parent is None:
                _link(prev, rc)
            prev = rc
        if cont.parent is not None:
            cont.parent.children.remove(cont)
            cont.parent = None
        if prev is not None:
            _link(prev, cont)
    roots = [c for c in table.values() if c.parent is None]

    def prune(c: _C) -> list[_C]:
        kids: list[_C] = []
        for k in list(c.children):
            kids.extend(prune(k))
        c.children = kids
        for k in kids:
            k.parent = c
        if c.num is None and (c.parent is not None or len(kids) <= 1):
            return kids  # empty container: promote its children
        return [c]

    top: list[_C] = []
    for root in roots:
        root.parent = None
        for x in prune(root):
            x.parent = None
            top.append(x)

    def sort_key(c: _C) -> tuple[datetime, int]:
        """(sent date, number) of a message; a dummy sorts as its first child (RFC 5256 4 (5)),
        so equal dates fall back to that child's number, as Dovecot does."""
        if c.num is not None:
            return c.date, c.num
        return min((sort_key(k) for k in c.children), default=(_EPOCH, 0))

    def subj(c: _C) -> tuple[str, bool]:
        if c.num is not None:
            return c.subject, c.is_reply
        k = min(c.children, key=sort_key) if c.children else c
        return k.subject, k.is_reply

    by_subject: dict[str, _C] = {}
    final: list[_C] = []
    for t in top:
        s, reply = subj(t)
        if not s:
            final.append(t)
            continue
        old = by_subject.get(s)
        if old is None:
            by_subject[s] = t
            final.append(t)
            continue
        _o_s, o_reply = subj(old)
        if old.num is None:
            _link(old, t)
        elif reply and not o_reply:
            _link(old, t)
        elif o_reply and not reply:
            _link(t, old)
            final[final.index(old)] = t
            by_subject[s] = t
        else:
            dummy = _C()
            idx = final.index(old)
            _link(dummy, old)
            _link(dummy, t)
            final[idx] = dummy
            by_subject[s] = dummy

    def order(cs: list[_C]) -> list[_C]:
        return sorted(cs, key=sort_key)

    def fmt(c: _C) -> str:
        s = str(c.num) if c.num is not None else ""
        kids = order(c.children)
        if len(kids) == 1 and c.num is not None:
            return s + " " + fmt(kids[0])
        if kids:
            return (s + " " if s else "") + "".join("(" + fmt(k) + ")" for k in kids)
        return s

    return "".join("(" + fmt(c) + ")" for c in order(final))

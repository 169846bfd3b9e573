"""The reads an IMAP session makes: mailbox lists and counters, its snapshot, changes since a
modseq, and column-selected message rows for FETCH/SEARCH/SORT.

Why a separate module: IMAP needs narrow, fast reads (a 10,000-message sync must be one query
returning plain tuples, no ORM objects), and a session's state is only (uids, highest modseq),
so "what changed" is always answered from mailbox counters, entry modseqs and tombstones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, Text, bindparam, func, select, type_coerce

from mailwright.services import Services
from mailwright.storage import prepared
from mailwright.storage.models import Mailbox, MailboxEntry, Message, Principal, Tombstone
from mailwright.storage.prepared import Prepared

_MB = cast(Table, Mailbox.__table__).c
_ME = cast(Table, MailboxEntry.__table__).c
_MS = cast(Table, Message.__table__).c
_TS = cast(Table, Tombstone.__table__).c
_PR = cast(Table, Principal.__table__).c


@dataclass(frozen=True, slots=True)
class BoxInfo:
    id: int
    name: str
    special_use: str | None
    subscribed: bool
    uidvalidity: int
    uidnext: int
    highestmodseq: int


_BOX_COLS = (_MB.id, _MB.name, _MB.special_use, _MB.subscribed, _MB.uidvalidity, _MB.uidnext, _MB.highestmodseq)


def _boxrow(r: Any) -> BoxInfo:
    return BoxInfo(int(r[0]), r[1], r[2], bool(r[3]), int(r[4]), int(r[5]), int(r[6]))


# Statements built once (see storage.prepared): building a select costs more than running it.
_LIST_BOXES = Prepared(select(*_BOX_COLS).where(_MB.principal_id == bindparam("pid")).order_by(_MB.name))
_GET_BOX = Prepared(select(*_BOX_COLS).where(_MB.principal_id == bindparam("pid"), _MB.name == bindparam("name")))
_COUNTERS = Prepared(select(_MB.uidnext, _MB.highestmodseq).where(_MB.id == bindparam("box")))
_ENTRIES = Prepared(select(_ME.uid, _ME.modseq, _ME.flags).where(_ME.mailbox_id == bindparam("box"))
                    .order_by(_ME.uid))
_ENTRIES_SINCE = Prepared(select(_ME.uid, _ME.modseq, _ME.flags)
                          .where(_ME.mailbox_id == bindparam("box"), _ME.modseq > bindparam("since"))
                          .order_by(_ME.uid))
_EXPUNGED_SINCE = Prepared(select(_TS.uid).where(_TS.mailbox_id == bindparam("box"), _TS.modseq > bindparam("since")))
_FLAGS = Prepared(select(_ME.flags).where(_ME.mailbox_id == bindparam("box")))
_SIZE = Prepared(select(func.coalesce(func.sum(func.coalesce(_MS.vsize, _MS.size)), 0))
                 .select_from(cast(Table, MailboxEntry.__table__))
                 .join(cast(Table, Message.__table__), _MS.id == _ME.message_id)
                 .where(_ME.mailbox_id == bindparam("box")))
_QUOTA = Prepared(select(_PR.used_bytes, _PR.quota_bytes).where(_PR.id == bindparam("pid")))


async def list_boxes(svc: Services, principal_id: str) -> list[BoxInfo]:
    return [_boxrow(r) for r in await prepared.fetch_all(svc, _LIST_BOXES, {"pid": principal_id})]


def canonical(name: str) -> str:
    """INBOX is case-insensitive (also as the first level of a hierarchy)."""
    head, sep, tail = name.partition("/")
    if head.upper() == "INBOX":
        return "INBOX" + sep + tail
    return name


async def get_box(svc: Services, principal_id: str, name: str) -> BoxInfo | None:
    r = await prepared.fetch_first(svc, _GET_BOX, {"pid": principal_id, "name": canonical(name)})
    return _boxrow(r) if r else None


async def counters(svc: Services, mailbox_id: int) -> tuple[int, int] | None:
    """(uidnext, highestmodseq), or None when the mailbox is gone."""
    r = await prepared.fetch_first(svc, _COUNTERS, {"box": mailbox_id})
    return (int(r[0]), int(r[1])) if r else None


async def entries(svc: Services, mailbox_id: int) -> list[tuple[int, int, str]]:
    """Every (uid, modseq, flags) in UID order: what SELECT needs."""
    return [(int(u), int(m), f) for u, m, f in await prepared.fetch_all(svc, _ENTRIES, {"box": mailbox_id})]


@dataclass(frozen=True, slots=True)
class Changes:
    entries: list[tuple[int, int, str]]  # (uid, modseq, flags) with modseq > since, UID order
    expunged: list[int]  # uids expunged with modseq > since
    uidnext: int
    highestmodseq: int


async def changes_since(svc: Services, mailbox_id: int, since: int) -> Changes | None:
    """What changed after modseq `since`; one counters read when nothing did (every command's case)."""
    inline = prepared.inline_reader(svc)
    if inline is not None:
        now = inline.all_now(_COUNTERS, {"box": mailbox_id})
        if not now:
            return None
        if int(now[0][1]) <= since:
            return Changes([], [], int(now[0][0]), int(now[0][1]))
    async with prepared.reader(svc) as rd:
        r = await rd.first(_COUNTERS, {"box": mailbox_id})
        if r is None:
            return None
        if int(r[1]) <= since:
            return Changes([], [], int(r[0]), int(r[1]))
        params = {"box": mailbox_id, "since": since}
        rows = await rd.all(_ENTRIES_SINCE, params)
        gone = await rd.all(_EXPUNGED_SINCE, params)
    return Changes([(int(u), int(m), f) for u, m, f in rows], sorted({int(g[0]) for g in gone}), int(r[0]),
                   int(r[1]))


async def expunged_since(svc: Services, mailbox_id: int, since: int) -> list[int]:
    gone = await prepared.fetch_all(svc, _EXPUNGED_SINCE, {"box": mailbox_id, "since": since})
    return sorted({int(g[0]) for g in gone})


MESSAGE_COLUMNS: dict[str, Any] = {
    "message_id": _MS.id, "size": func.coalesce(_MS.vsize, _MS.size),
    "internal_date": _MS.internal_date,
    "envelope": _MS.envelope, "bodystructure": _MS.bodystructure, "body": _MS.body,
    "blob_hash": _MS.blob_hash, "header_size": _MS.header_size, "sent_date": _MS.sent_date,
    "search_text": _MS.search_text, "base_subject": _MS.base_subject, "subject": _MS.subject,
    "from_addr": _MS.from_addr, "to_addrs": _MS.to_addrs, "cc_addrs": _MS.cc_addrs,
    "message_id_header": _MS.message_id_header, "in_reply_to": _MS.in_reply_to,
    "references": _MS.references, "from_display": _MS.from_display, "raw_size": _MS.size, "vsize": _MS.vsize,
}


def _rows_query(columns: Sequence[str], sqlite_text: bool, lo: bool, hi: bool, since: bool) -> Prepared:
    key = (tuple(columns), sqlite_text, lo, hi, since)
    q = _ROWS_CACHE.get(key)
    if q is None:
        cols: list[Any] = [type_coerce(_MS.internal_date, Text) if sqlite_text and c == "internal_date"
                           else MESSAGE_COLUMNS[c] for c in columns]
        stmt = select(_ME.uid, _ME.modseq, _ME.flags, *cols)
        if cols:
            stmt = stmt.join_from(cast(Table, MailboxEntry.__table__), cast(Table, Message.__table__),
                                  _MS.id == _ME.message_id)
        stmt = stmt.where(_ME.mailbox_id == bindparam("box"))
        if lo:
            stmt = stmt.where(_ME.uid >= bindparam("lo"))
        if hi:
            stmt = stmt.where(_ME.uid <= bindparam("hi"))
        if since:
            stmt = stmt.where(_ME.modseq > bindparam("since"))
        q = Prepared(stmt.order_by(_ME.uid))
        if len(_ROWS_CACHE) < 512:
            _ROWS_CACHE[key] = q
    return q


def rows_params(svc: Services, mailbox_id: int, lo_uid: int, hi_uid: int, columns: Sequence[str],
                *, changed_since: int | None = None, raw_dates: bool = False) -> tuple[Prepared, dict[str, int]]:
    """The statement and parameters `rows` runs (for callers that run it on their own reader)."""
    sqlite_text = raw_dates and svc.db.is_sqlite
    lo, hi = lo_uid > 1, hi_uid < 2**63
    q = _rows_query(columns, sqlite_text, lo, hi, changed_since is not None)
    params: dict[str, int] = {"box": mailbox_id}
    if lo:
        params["lo"] = lo_uid
    if hi:
        params["hi"] = hi_uid
    if changed_since is not None:
        params["since"] = changed_since
    return q, params


async def rows(svc: Services, mailbox_id: int, lo_uid: int, hi_uid: int, columns: Sequence[str],
               *, changed_since: int | None = None, raw_dates: bool = False) -> list[Any]:
    """(uid, modseq, flags, *columns) for entries with lo_uid <= uid <= hi_uid, in UID order.

    One query, plain row tuples: this is the hot path of a full sync. With raw_dates,
    internal_date comes as the driver gives it (SQLite: text, no per-row datetime parsing)."""
    q, params = rows_params(svc, mailbox_id, lo_uid, hi_uid, columns, changed_since=changed_since,
                            raw_dates=raw_dates)
    return await prepared.fetch_all(svc, q, params)


async def meta_rows(svc: Services, mailbox_id: int, lo_uid: int, hi_uid: int, columns: Sequence[str],
                    *, changed_since: int | None = None) -> tuple[list[Any], bool]:
    """`rows` for a blob-less FETCH renderer, and whether ENVELOPE/BODYSTRUCTURE/BODY come
    WireText-escaped (SQLite: as stored, see prepared.Reader.all_now; the renderer undoes the
    rare escape while encoding) or already unescaped (PostgreSQL)."""
    q, params = rows_params(svc, mailbox_id, lo_uid, hi_uid, columns, changed_since=changed_since, raw_dates=True)
    inline = prepared.inline_reader(svc)
    if inline is not None:
        return inline.all_now(q, params, wire_escaped=True), True
    return await prepared.fetch_all(svc, q, params), False


# Prepared statements for `rows`, per shape.
_ROWS_CACHE: dict[tuple[Any, ...], Prepared] = {}


@dataclass(frozen=True, slots=True)
class BoxStatus:
    messages: int
    unseen: int
    deleted: int
    size: int
    uidnext: int
    uidvalidity: int
    highestmodseq: int


async def status(svc: Services, box: BoxInfo) -> BoxStatus:
    params = {"box": box.id}
    async with prepared.reader(svc) as rd:
        r = await rd.first(_COUNTERS, params)
        flags = [f[0] for f in await rd.all(_FLAGS, params)]
        size = (await rd.all(_SIZE, params))[0][0]
    unseen = sum(1 for f in flags if "\\seen" not in f.lower())
    deleted = sum(1 for f in flags if "\\deleted" in f.lower())
    uidnext, hms = (int(r[0]), int(r[1])) if r else (box.uidnext, box.highestmodseq)
    return BoxStatus(len(flags), unseen, deleted, int(size), uidnext, box.uidvalidity, hms)


async def quota_usage(svc: Services, principal_id: str) -> tuple[int, int]:
    """(used bytes, quota bytes; 0 = unlimited) of the account."""
    r = await prepared.fetch_first(svc, _QUOTA, {"pid": principal_id})
    return (int(r[0] or 0), int(r[1] or 0)) if r else (0, 0)

"""The reads an IMAP session makes: mailbox lists and counters, its snapshot, changes since a
modseq, and column-selected message rows for FETCH/SEARCH/SORT.

Why a separate module: IMAP needs narrow, fast reads (a 10,000-message sync must be one query
returning plain tuples, no ORM objects), and a session's state is only (uids, highest modseq),
so "what changed" is always answered from mailbox counters, entry modseqs and tombstones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Text, bindparam, func, select, type_coerce

from mailwright.mailstore.inline_sqlite import fast_read
from mailwright.services import Services
from mailwright.storage.models import Mailbox, MailboxEntry, Message, Principal, Tombstone


@dataclass(frozen=True, slots=True)
class BoxInfo:
    id: int
    name: str
    special_use: str | None
    subscribed: bool
    uidvalidity: int
    uidnext: int
    highestmodseq: int


def _box(m: Mailbox) -> BoxInfo:
    return BoxInfo(int(m.id), m.name, m.special_use, bool(m.subscribed), int(m.uidvalidity), int(m.uidnext),
                   int(m.highestmodseq))


_BOX_COLS = (Mailbox.id, Mailbox.name, Mailbox.special_use, Mailbox.subscribed, Mailbox.uidvalidity,
             Mailbox.uidnext, Mailbox.highestmodseq)


def _boxrow(r: Any) -> BoxInfo:
    return BoxInfo(int(r[0]), r[1], r[2], bool(r[3]), int(r[4]), int(r[5]), int(r[6]))


async def list_boxes(svc: Services, principal_id: str) -> list[BoxInfo]:
    async with fast_read(svc) as s:
        rows = (await s.execute(select(*_BOX_COLS).where(Mailbox.principal_id == principal_id)
                                .order_by(Mailbox.name))).all()
    return [_boxrow(r) for r in rows]


def canonical(name: str) -> str:
    """INBOX is case-insensitive (also as the first level of a hierarchy)."""
    head, sep, tail = name.partition("/")
    if head.upper() == "INBOX":
        return "INBOX" + sep + tail
    return name


async def get_box(svc: Services, principal_id: str, name: str) -> BoxInfo | None:
    async with fast_read(svc) as s:
        r = (await s.execute(select(*_BOX_COLS).where(Mailbox.principal_id == principal_id,
                                                      Mailbox.name == canonical(name)))).first()
    return _boxrow(r) if r else None


async def counters(svc: Services, mailbox_id: int) -> tuple[int, int] | None:
    """(uidnext, highestmodseq), or None when the mailbox is gone."""
    async with fast_read(svc) as s:
        r = (await s.execute(select(Mailbox.uidnext, Mailbox.highestmodseq).where(Mailbox.id == mailbox_id))).first()
    return (int(r[0]), int(r[1])) if r else None


async def entries(svc: Services, mailbox_id: int) -> list[tuple[int, int, str]]:
    """Every (uid, modseq, flags) in UID order: what SELECT needs."""
    async with fast_read(svc) as s:
        rows = (await s.execute(
            select(MailboxEntry.uid, MailboxEntry.modseq, MailboxEntry.flags)
            .where(MailboxEntry.mailbox_id == mailbox_id).order_by(MailboxEntry.uid)
        )).all()
    return [(int(u), int(m), f) for u, m, f in rows]


@dataclass(frozen=True, slots=True)
class Changes:
    entries: list[tuple[int, int, str]]  # (uid, modseq, flags) with modseq > since, UID order
    expunged: list[int]  # uids expunged with modseq > since
    uidnext: int
    highestmodseq: int


async def changes_since(svc: Services, mailbox_id: int, since: int) -> Changes | None:
    async with fast_read(svc) as s:
        r = (await s.execute(select(Mailbox.uidnext, Mailbox.highestmodseq).where(Mailbox.id == mailbox_id))).first()
        if r is None:
            return None
        if int(r[1]) <= since:
            return Changes([], [], int(r[0]), int(r[1]))
        rows = (await s.execute(
            select(MailboxEntry.uid, MailboxEntry.modseq, MailboxEntry.flags)
            .where(MailboxEntry.mailbox_id == mailbox_id, MailboxEntry.modseq > since).order_by(MailboxEntry.uid)
        )).all()
        gone = (await s.execute(
            select(Tombstone.uid).where(Tombstone.mailbox_id == mailbox_id, Tombstone.modseq > since)
        )).scalars().all()
    return Changes([(int(u), int(m), f) for u, m, f in rows], sorted({int(u) for u in gone}), int(r[0]), int(r[1]))


async def expunged_since(svc: Services, mailbox_id: int, since: int) -> list[int]:
    async with fast_read(svc) as s:
        gone = (await s.execute(
            select(Tombstone.uid).where(Tombstone.mailbox_id == mailbox_id, Tombstone.modseq > since)
        )).scalars().all()
    return sorted({int(u) for u in gone})


MESSAGE_COLUMNS = {
    "message_id": Message.id, "size": func.coalesce(Message.vsize, Message.size),
    "internal_date": Message.internal_date,
    "envelope": Message.envelope, "bodystructure": Message.bodystructure, "body": Message.body,
    "blob_hash": Message.blob_hash, "header_size": Message.header_size, "sent_date": Message.sent_date,
    "search_text": Message.search_text, "base_subject": Message.base_subject, "subject": Message.subject,
    "from_addr": Message.from_addr, "to_addrs": Message.to_addrs, "cc_addrs": Message.cc_addrs,
    "message_id_header": Message.message_id_header, "in_reply_to": Message.in_reply_to,
    "references": Message.references, "from_display": Message.from_display,
}


async def rows(svc: Services, mailbox_id: int, lo_uid: int, hi_uid: int, columns: Sequence[str],
               *, changed_since: int | None = None, raw_dates: bool = False) -> list[Any]:
    """(uid, modseq, flags, *columns) for entries with lo_uid <= uid <= hi_uid, in UID order.

    One query, plain row tuples: this is the hot path of a full sync. With raw_dates,
    internal_date comes as the driver gives it (SQLite: text, no per-row datetime parsing)."""
    sqlite_text = raw_dates and svc.db.is_sqlite
    key = (tuple(columns), sqlite_text, lo_uid > 1, hi_uid < 2**63, changed_since is not None)
    q = _ROWS_CACHE.get(key)
    if q is None:
        cols: list[Any] = [type_coerce(Message.internal_date, Text) if sqlite_text and c == "internal_date"
                           else MESSAGE_COLUMNS[c] for c in columns]
        q = select(MailboxEntry.uid, MailboxEntry.modseq, MailboxEntry.flags, *cols)
        if cols:
            q = q.join(Message, Message.id == MailboxEntry.message_id)
        q = q.where(MailboxEntry.mailbox_id == bindparam("box"))
        if key[2]:
            q = q.where(MailboxEntry.uid >= bindparam("lo"))
        if key[3]:
            q = q.where(MailboxEntry.uid <= bindparam("hi"))
        if key[4]:
            q = q.where(MailboxEntry.modseq > bindparam("since"))
        q = q.order_by(MailboxEntry.uid)
        if len(_ROWS_CACHE) < 512:
            _ROWS_CACHE[key] = q
    params: dict[str, int] = {"box": mailbox_id}
    if key[2]:
        params["lo"] = lo_uid
    if key[3]:
        params["hi"] = hi_uid
    if changed_since is not None:
        params["since"] = changed_since
    async with fast_read(svc) as s:
        return list((await s.execute(q, params)).all())


# Prepared statements for `rows`, per shape (building a select costs more than running it).
_ROWS_CACHE: dict[tuple[Any, ...], Any] = {}


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
    async with fast_read(svc) as s:
        r = (await s.execute(select(Mailbox.uidnext, Mailbox.highestmodseq).where(Mailbox.id == box.id))).first()
        flags = (await s.execute(select(MailboxEntry.flags).where(MailboxEntry.mailbox_id == box.id))).scalars().all()
        size = (await s.execute(
            select(func.coalesce(func.sum(func.coalesce(Message.vsize, Message.size)), 0)).select_from(MailboxEntry)
            .join(Message, Message.id == MailboxEntry.message_id).where(MailboxEntry.mailbox_id == box.id)
        )).scalar_one()
    unseen = sum(1 for f in flags if "\\seen" not in f.lower())
    deleted = sum(1 for f in flags if "\\deleted" in f.lower())
    uidnext, hms = (int(r[0]), int(r[1])) if r else (box.uidnext, box.highestmodseq)
    return BoxStatus(len(flags), unseen, deleted, int(size), uidnext, box.uidvalidity, hms)


async def quota_usage(svc: Services, principal_id: str) -> tuple[int, int]:
    """(used bytes, quota bytes; 0 = unlimited) of the account."""
    async with fast_read(svc) as s:
        r = (await s.execute(select(Principal.used_bytes, Principal.quota_bytes)
                             .where(Principal.id == principal_id))).first()
    return (int(r[0] or 0), int(r[1] or 0)) if r else (0, 0)

"""Read views for the REST dialects: messages, threads, attachments and drafts of one account.

IMAP sees mailboxes; the REST dialects see an account's mail as a flat, newest-first list
(INBOX + Sent), threads (the `thread_id` computed at delivery from References/In-Reply-To) and
drafts (messages in the \\Drafts mailbox). Listing is database reads only; bodies and
attachments come from the blob, parsed on demand.

Drafts are ordinary MIME messages in \\Drafts, so IMAP clients see them too. A draft's API id
is stable across updates: it is carried in the draft's own Message-ID
(`<draft-id@drafts.mailwright.invalid>`); an update appends the new version and removes the old
one. `X-Mailwright-Reply-To-Id` remembers the message a draft replies to.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select

from mailwright.mailstore import changes, mailboxes
from mailwright.mailstore.mime import Attachment, ParsedMessage, fetch_binary, parse_message
from mailwright.services import Services
from mailwright.storage.models import Mailbox, MailboxEntry, Message

DRAFT_DOMAIN = "drafts.mailwright.invalid"
REPLY_TO_ID_HEADER = "X-Mailwright-Reply-To-Id"


@dataclass(frozen=True)
class MessageView:
    message: Message
    mailbox: str  # "INBOX", "Sent", ...
    mailbox_id: int
    uid: int
    flags: str


def _listed_boxes() -> object:
    return or_(Mailbox.name == "INBOX", Mailbox.special_use == "\\Sent")


async def list_messages(svc: Services, principal_id: str, *, limit: int = 50, offset: int = 0,
                        thread_id: str | None = None) -> list[MessageView]:
    """INBOX + Sent, newest first (one entry per message even if it is filed twice)."""
    q = (
        select(Message, Mailbox.name, Mailbox.id, MailboxEntry.uid, MailboxEntry.flags)
        .join(MailboxEntry, MailboxEntry.message_id == Message.id)
        .join(Mailbox, Mailbox.id == MailboxEntry.mailbox_id)
        .where(Mailbox.principal_id == principal_id, _listed_boxes())  # type: ignore[arg-type]
    )
    if thread_id is not None:
        q = q.where(Message.thread_id == thread_id)
    q = q.order_by(Message.internal_date.desc(), Message.id.desc()).offset(offset).limit(limit)
    async with svc.db.read() as s:
        rows = (await s.execute(q)).all()
    seen: set[int] = set()
    out: list[MessageView] = []
    for m, box, box_id, uid, flags in rows:
        if m.id in seen:
            continue
        seen.add(m.id)
        out.append(MessageView(m, str(box), int(box_id), int(uid), str(flags)))
    return out


async def get_message(svc: Services, principal_id: str, message_id: int) -> MessageView | None:
    q = (
        select(Message, Mailbox.name, Mailbox.id, MailboxEntry.uid, MailboxEntry.flags)
        .join(MailboxEntry, MailboxEntry.message_id == Message.id)
        .join(Mailbox, Mailbox.id == MailboxEntry.mailbox_id)
        .where(Message.id == message_id, Message.principal_id == principal_id)
        .limit(1)
    )
    async with svc.db.read() as s:
        row = (await s.execute(q)).first()
    if row is None:
        return None
    return MessageView(row[0], str(row[1]), int(row[2]), int(row[3]), str(row[4]))


async def find_by_header_id(svc: Services, principal_id: str, header_id: str) -> Message | None:
    """A message of this account by its Message-ID header (with or without angle brackets)."""
    hid = header_id.strip()
    if not hid.startswith("<"):
        hid = f"<{hid}>"
    q = select(Message).where(Message.principal_id == principal_id, Message.message_id_header == hid).order_by(
        Message.id).limit(1)
    async with svc.db.read() as s:
        return (await s.execute(q)).scalar_one_or_none()


async def content(svc: Services, message: Message) -> tuple[bytes, ParsedMessage]:
    raw = await svc.blobs.get(message.blob_hash)
    return raw, parse_message(raw)


def attachment_data(raw: bytes, att: Attachment) -> bytes:
    data = fetch_binary(raw, att.part)
    return data if data is not None else b""


async def attachments(svc: Services, message: Message) -> list[tuple[Attachment, bytes]]:
    if not message.has_attachment:
        return []
    raw, parsed = await content(svc, message)
    return [(a, attachment_data(raw, a)) for a in parsed.attachments]


@dataclass(frozen=True)
class ThreadView:
    thread_id: str
    subject: str
    message_count: int
    last_message_at: datetime
    first_message_at: datetime
    participants: list[str]
    preview: str
    last_message_id: int


async def list_threads(svc: Services, principal_id: str, *, limit: int = 50, offset: int = 0) -> list[ThreadView]:
    """Threads of INBOX + Sent, most recently active first."""
    q = (
        select(Message.id, Message.thread_id, Message.internal_date, Message.subject, Message.preview,
               Message.from_addr, Message.to_addrs)
        .join(MailboxEntry, MailboxEntry.message_id == Message.id)
        .join(Mailbox, Mailbox.id == MailboxEntry.mailbox_id)
        .where(Mailbox.principal_id == principal_id, _listed_boxes())  # type: ignore[arg-type]
        .order_by(Message.internal_date.desc(), Message.id.desc())
    )
    async with svc.db.read() as s:
        rows = (await s.execute(q)).all()
    groups: dict[str, list[tuple[int, datetime, str, str, str, str]]] = {}
    seen: set[int] = set()
    for mid, tid, when, subj, prev, frm, to in rows:
        if mid in seen:
            continue
        seen.add(mid)
        groups.setdefault(str(tid), []).append((int(mid), when, subj or "", prev or "", frm or "", to or ""))
    out: list[ThreadView] = []
    for tid, msgs in groups.items():  # insertion order = most recent activity first
        people: dict[str, None] = {}
        for m in reversed(msgs):
            for a in [m[4], *m[5].split(",")]:
                if a:
                    people.setdefault(a, None)
        out.append(ThreadView(tid, msgs[-1][2], len(msgs), msgs[0][1], msgs[-1][1], list(people), msgs[0][3],
                              msgs[0][0]))
    return out[offset:offset + limit]


# ----------------------------------------------------------------------------------------------- drafts

def draft_header_id(draft_id: str) -> str:
    return f"<{draft_id}@{DRAFT_DOMAIN}>"


def new_draft_id() -> str:
    return str(uuid.uuid4())


async def drafts_box(svc: Services, principal_id: str) -> int:
    async with svc.db.write() as s:
        box = await mailboxes.get_by_special_use(s, principal_id, "\\Drafts")
        if box is None:
            await mailboxes.ensure_defaults(s, principal_id)
            box = await mailboxes.get_by_special_use(s, principal_id, "\\Drafts")
        assert box is not None
        return int(box.id)


async def list_drafts(svc: Services, principal_id: str) -> list[MessageView]:
    q = (
        select(Message, Mailbox.name, Mailbox.id, MailboxEntry.uid, MailboxEntry.flags)
        .join(MailboxEntry, MailboxEntry.message_id == Message.id)
        .join(Mailbox, Mailbox.id == MailboxEntry.mailbox_id)
        .where(Mailbox.principal_id == principal_id, Mailbox.special_use == "\\Drafts")
        .order_by(Message.internal_date.desc(), Message.id.desc())
    )
    async with svc.db.read() as s:
        rows = (await s.execute(q)).all()
    return [MessageView(r[0], str(r[1]), int(r[2]), int(r[3]), str(r[4])) for r in rows]


def draft_id_of(message: Message) -> str | None:
    hid = message.message_id_header or ""
    suffix = f"@{DRAFT_DOMAIN}>"
    if hid.startswith("<") and hid.endswith(suffix):
        return hid[1:-len(suffix)]
    return None


async def get_draft(svc: Services, principal_id: str, draft_id: str) -> MessageView | None:
    for v in await list_drafts(svc, principal_id):
        if draft_id_of(v.message) == draft_id:
            return v
    return None


async def save_draft(svc: Services, principal_id: str, raw: bytes) -> int:
    """File a draft (raw MIME) in \\Drafts; returns its message id."""
    box = await drafts_box(svc, principal_id)
    st = await changes.append(svc, principal_id, box, raw, flags=["\\Draft"])
    return st.message_id


async def remove_entry(svc: Services, principal_id: str, mailbox_id: int, uid: int) -> bool:
    """Remove one message from one mailbox; True only for the caller that actually removed it
    (two concurrent removals: exactly one wins — how a draft is claimed before sending)."""
    await changes.store_flags(svc, principal_id, mailbox_id, [uid], "add", ["\\Deleted"])
    return uid in await changes.expunge(svc, principal_id, mailbox_id, [uid])


async def _entries_of(svc: Services, principal_id: str, message_id: int) -> list[tuple[int, int]]:
    q = (select(MailboxEntry.mailbox_id, MailboxEntry.uid).join(Mailbox, Mailbox.id == MailboxEntry.mailbox_id)
         .where(MailboxEntry.message_id == message_id, Mailbox.principal_id == principal_id))
    async with svc.db.read() as s:
        return [(int(b), int(u)) for b, u in (await s.execute(q)).all()]


async def set_seen(svc: Services, principal_id: str, message_id: int, seen: bool) -> None:
    """Set or clear \\Seen wherever the message is filed (modseq bumped: IMAP clients see it)."""
    for box, uid in await _entries_of(svc, principal_id, message_id):
        await changes.store_flags(svc, principal_id, box, [uid], "add" if seen else "remove", ["\\Seen"])


async def delete_message(svc: Services, principal_id: str, message_id: int) -> None:
    """Expunge the message from every mailbox of the account; the last removal frees the quota."""
    for box, uid in await _entries_of(svc, principal_id, message_id):
        await remove_entry(svc, principal_id, box, uid)


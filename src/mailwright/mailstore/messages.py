"""Storing messages: deliver (SMTP, API send, forwards) and the reads every protocol shares.

A message is parsed once per delivery; its blob is written and fsynced before the transaction
that references it commits, and the caller answers 250/2xx only after `deliver` returns — so an
accepted message survives a crash at any point (a crash between the two leaves an orphan blob,
never a dangling reference).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from mailwright.events.bus import Event
from mailwright.mailstore import mailboxes
from mailwright.mailstore.mime import ParsedMessage, parse_message
from mailwright.services import Services
from mailwright.storage.models import Blob, MailboxEntry, Message, Principal, utcnow


@dataclass(frozen=True)
class Target:
    principal_id: str
    mailbox: str = "INBOX"  # a name, or a special-use flag such as "\\Junk"
    flags: str = ""


@dataclass(frozen=True)
class Stored:
    principal_id: str
    mailbox_id: int
    message_id: int
    uid: int
    modseq: int
    thread_id: str


async def _thread_for(session: AsyncSession, principal_id: str, parsed: ParsedMessage) -> str:
    """Join the thread of any message this one replies to or references (RFC 5256 REFERENCES)."""
    ids = [i for i in [*parsed.references, *parsed.in_reply_to] if i]
    if ids:
        q = (
            select(Message.thread_id)
            .where(Message.principal_id == principal_id, Message.message_id_header.in_(ids))
            .limit(1)
        )
        found = (await session.execute(q)).scalar_one_or_none()
        if found:
            return str(found)
    if parsed.message_id:
        # A reply may have arrived before its parent; adopt the thread that references us.
        q = select(Message.thread_id).where(
            Message.principal_id == principal_id, Message.in_reply_to == parsed.message_id
        ).limit(1)
        found = (await session.execute(q)).scalar_one_or_none()
        if found:
            return str(found)
    return str(uuid.uuid4())


def virtual_size(raw: bytes) -> int:
    """The size IMAP reports (RFC822.SIZE): a bare LF counts as CRLF, as Dovecot counts it."""
    return len(raw) + raw.count(b"\n") - raw.count(b"\r\n")


def message_row(principal_id: str, blob_hash: str, raw_size: int, parsed: ParsedMessage,
                internal_date: datetime, mail_from: str | None, thread_id: str, vsize: int | None = None) -> Message:
    return Message(
        principal_id=principal_id,
        blob_hash=blob_hash,
        size=raw_size,
        vsize=vsize,
        internal_date=internal_date,
        envelope=parsed.envelope,
        bodystructure=parsed.bodystructure,
        body=parsed.body,
        header_size=parsed.header_size,
        subject=parsed.subject,
        base_subject=parsed.base_subject,
        from_addr=parsed.from_addr,
        from_display=parsed.from_display,
        to_addrs=",".join(parsed.to_addrs),
        cc_addrs=",".join(parsed.cc_addrs),
        message_id_header=parsed.message_id,
        in_reply_to=" ".join(parsed.in_reply_to) or None,
        references=" ".join(parsed.references) or None,
        sent_date=parsed.sent_date,
        preview=parsed.preview,
        search_text=parsed.search_text,
        has_attachment=bool(parsed.attachments),
        thread_id=thread_id,
        mail_from=mail_from,
    )


async def deliver(
    svc: Services,
    raw: bytes,
    targets: list[Target],
    *,
    mail_from: str | None = None,
    internal_date: datetime | None = None,
    parsed: ParsedMessage | None = None,
) -> list[Stored]:
    """Store `raw` once and file it for every target, in one durable transaction."""
    if not targets:
        return []
    parsed = parsed or parse_message(raw)
    digest = await svc.blobs.put(raw)
    when = internal_date or utcnow()
    stored: list[Stored] = []
    async with svc.db.write() as s:
        if await s.get(Blob, digest) is None:
            s.add(Blob(hash=digest, size=len(raw)))
        for t in targets:
            box = await _target_mailbox(s, t)
            if box is None:
                continue
            thread_id = await _thread_for(s, t.principal_id, parsed)
            msg = message_row(t.principal_id, digest, len(raw), parsed, when, mail_from, thread_id,
                              virtual_size(raw))
            s.add(msg)
            await s.flush()
            uid, modseq = await mailboxes.allocate(s, box)
            s.add(MailboxEntry(mailbox_id=box, message_id=msg.id, uid=uid, modseq=modseq, flags=t.flags))
            charge = Principal.used_bytes + len(raw)
            await s.execute(update(Principal).where(Principal.id == t.principal_id).values(used_bytes=charge))
            stored.append(Stored(t.principal_id, box, msg.id, uid, modseq, thread_id))
    await svc.blobs.ensure(digest, raw)
    for st in stored:
        await svc.events.publish(Event(type="message.added", principal_id=st.principal_id, mailbox_id=st.mailbox_id,
                                       modseq=st.modseq, uids=(st.uid,), data={"message_id": st.message_id}))
    return stored


async def _target_mailbox(s: AsyncSession, t: Target) -> int | None:
    box = None
    if t.mailbox.startswith("\\"):
        box = await mailboxes.get_by_special_use(s, t.principal_id, t.mailbox)
    else:
        box = await mailboxes.get_by_name(s, t.principal_id, t.mailbox)
    if box is None:
        box = await mailboxes.get_by_name(s, t.principal_id, "INBOX")
    if box is None:
        # An account created before its mailboxes existed (or whose INBOX was lost): make them.
        await mailboxes.ensure_defaults(s, t.principal_id)
        box = await mailboxes.get_by_name(s, t.principal_id, "INBOX")
    return box.id if box is not None else None

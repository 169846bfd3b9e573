"""Read paths shared by IMAP, POP3, JMAP and the REST dialects."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from mailwright.mailstore import mailboxes
from mailwright.services import Services
from mailwright.storage.models import Mailbox, MailboxEntry, Message


@dataclass(frozen=True)
class EntryView:
    uid: int
    modseq: int
    flags: str
    message: Message


async def open_mailbox(svc: Services, principal_id: str, name: str) -> tuple[Mailbox, list[EntryView]] | None:
    """The mailbox and every entry in UID order, message metadata joined in (no blob reads)."""
    async with svc.db.read() as s:
        box = await mailboxes.get_by_name(s, principal_id, name)
        if box is None:
            return None
        q = (
            select(MailboxEntry.uid, MailboxEntry.modseq, MailboxEntry.flags, Message)
            .join(Message, Message.id == MailboxEntry.message_id)
            .where(MailboxEntry.mailbox_id == box.id)
            .order_by(MailboxEntry.uid)
        )
        rows = (await s.execute(q)).all()
    return box, [EntryView(int(r[0]), int(r[1]), r[2], r[3]) for r in rows]


async def raw_message(svc: Services, message: Message) -> bytes:
    return await svc.blobs.get(message.blob_hash)

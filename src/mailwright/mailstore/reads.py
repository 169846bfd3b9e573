"""Read paths shared by IMAP, POP3, JMAP and the REST dialects."""

from __future__ import annotations

import os
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


INLINE_BLOB_MAX = 256 * 1024  # smaller files are read on the loop (page cache: microseconds)


def _read_file(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = []
        while True:
            b = os.read(fd, 1 << 20)
            if not b:
                break
            chunks.append(b)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)
    finally:
        os.close(fd)


async def blob(svc: Services, digest: str, size: int | None = None) -> bytes:
    """A message's bytes for IMAP/POP3: a small blob is read at once on the loop (no stat, no
    pathlib, no thread hand-off: a FETCH of one message is a few hundred microseconds in all);
    one of INLINE_BLOB_MAX or more (or of unknown size) goes through BlobStore.get."""
    if size is None or size >= INLINE_BLOB_MAX:
        return await svc.blobs.get(digest)
    try:
        return _read_file(svc.blobs.fspath(digest))
    except FileNotFoundError:  # just delivered: its bytes are still only in the blob journal
        return await svc.blobs.get(digest)

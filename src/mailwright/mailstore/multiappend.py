"""IMAP APPEND of one or several messages as one transaction (RFC 3502 MULTIAPPEND).

RFC 3502 §3: "If the server fails to append any message, none of the messages are appended"
- Dovecot saves a MULTIAPPEND in one mailbox transaction and rolls it back on any failure, and
so does this: the quota is checked for the messages together, every blob is written (and
fsynced) before the transaction, and the message rows, the entries (consecutive UIDs, one
modseq) and the quota charge are committed at once or not at all. A blob left by a failed
attempt is an orphan file, as after a crash between `BlobStore.put` and the commit.

It is `changes.append` for a list (the same helpers build the rows), kept apart from it so the
single-message path JMAP and the REST dialects use does not change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import update

from mailwright.directory.errors import QuotaExceeded
from mailwright.events.bus import Event
from mailwright.mailstore import mailboxes, quota
from mailwright.mailstore.changes import normalize_flags
from mailwright.mailstore.messages import Stored, _thread_for, message_row
from mailwright.mailstore.mime import parse_message
from mailwright.services import Services
from mailwright.storage.models import Blob, MailboxEntry, Principal, utcnow


@dataclass(frozen=True, slots=True)
class NewMessage:
    raw: bytes
    flags: list[str]
    internal_date: datetime | None = None


async def append_all(svc: Services, principal_id: str, mailbox_id: int, msgs: Sequence[NewMessage]) -> list[Stored]:
    """Store every message in the mailbox, or none (QuotaExceeded, or whatever failed)."""
    if not msgs:
        return []
    parsed = [parse_message(m.raw) for m in msgs]
    total = sum(len(m.raw) for m in msgs)
    async with svc.db.read() as s:
        qc = await quota.check(s, principal_id, total)
    if not qc.ok:
        raise QuotaExceeded("mailbox quota exceeded")
    digests = [await svc.blobs.put(m.raw) for m in msgs]
    stored: list[Stored] = []
    async with svc.db.write() as s:
        first, modseq = await mailboxes.allocate(s, mailbox_id, len(msgs))
        known: set[str] = set()
        for i, (m, p, digest) in enumerate(zip(msgs, parsed, digests, strict=True)):
            if digest not in known and await s.get(Blob, digest) is None:
                s.add(Blob(hash=digest, size=len(m.raw)))
            known.add(digest)
            thread_id = await _thread_for(s, principal_id, p)
            row = message_row(principal_id, digest, len(m.raw), p, m.internal_date or utcnow(), None, thread_id,
                              p.vsize)
            s.add(row)
            await s.flush()  # the row's id, and a later message of the batch may thread onto it
            s.add(MailboxEntry(mailbox_id=mailbox_id, message_id=row.id, uid=first + i, modseq=modseq,
                               flags=" ".join(normalize_flags(m.flags))))
            stored.append(Stored(principal_id, mailbox_id, row.id, first + i, modseq, thread_id))
        await s.execute(update(Principal).where(Principal.id == principal_id)
                        .values(used_bytes=Principal.used_bytes + total))
    for m, digest in zip(msgs, digests, strict=True):
        await svc.blobs.ensure(digest, m.raw)
    for st in stored:
        await svc.events.publish(Event(type="message.added", principal_id=principal_id, mailbox_id=mailbox_id,
                                       modseq=modseq, uids=(st.uid,), data={"message_id": st.message_id}))
    return stored

"""The POP3 maildrop: an exclusive lease on an account's INBOX and the snapshot a session works on.

RFC 1939 wants one session per maildrop; the lease lives in the database (not in process
memory) so it holds across `serve` workers and nodes. A crashed session's lease simply expires;
live sessions renew theirs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete

from mailwright.mailstore import changes, reads
from mailwright.services import Services
from mailwright.storage.models import MaildropLock, Message, utcnow


@dataclass(frozen=True)
class DropItem:
    uid: int
    size: int
    uidl: str
    message: Message


async def acquire(svc: Services, principal_id: str, owner: str, ttl: float = 900) -> bool:
    now = utcnow()
    async with svc.db.write() as s:
        row = await s.get(MaildropLock, principal_id)
        if row is not None and row.owner != owner and row.expires_at > now:
            return False
        if row is None:
            s.add(MaildropLock(principal_id=principal_id, owner=owner, expires_at=now + timedelta(seconds=ttl)))
        else:
            row.owner = owner
            row.expires_at = now + timedelta(seconds=ttl)
    return True


async def release(svc: Services, principal_id: str, owner: str) -> None:
    async with svc.db.write() as s:
        await s.execute(delete(MaildropLock).where(MaildropLock.principal_id == principal_id,
                                                   MaildropLock.owner == owner))


async def snapshot(svc: Services, principal_id: str) -> tuple[int, list[DropItem]]:
    """(INBOX id, messages in UID order). UIDL = Dovecot's default %08Xu%08Xv: stable across sessions."""
    opened = await reads.open_mailbox(svc, principal_id, "INBOX")
    if opened is None:
        return 0, []
    box, entries = opened
    return box.id, [DropItem(e.uid, e.message.size, f"{e.uid:08X}{box.uidvalidity:08X}", e.message)
                    for e in entries if "\\deleted" not in e.flags.lower()]


async def commit(svc: Services, principal_id: str, mailbox_id: int, retrieved: list[int], deleted: list[int]) -> int:
    """The UPDATE state: mark retrieved messages \\Seen, remove deleted ones; returns how many went."""
    if retrieved:
        await changes.store_flags(svc, principal_id, mailbox_id, retrieved, "add", ["\\Seen"])
    if not deleted:
        return 0
    await changes.store_flags(svc, principal_id, mailbox_id, deleted, "add", ["\\Deleted"])
    gone = await changes.expunge(svc, principal_id, mailbox_id, deleted)
    return len(gone)

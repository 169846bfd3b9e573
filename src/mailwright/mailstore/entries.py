"""Whole-message removal for the REST dialects that see a message, not its mailbox entries.

`DELETE /api/messages/{id}` (mail.cx dialect) removes every mailbox entry of the message through
`changes` (flag \\Deleted + UID EXPUNGE per mailbox), so IMAP sessions see proper expunges,
tombstones and modseqs; the message row, its quota charge and its blob go with its last entry.
"""

from __future__ import annotations

from sqlalchemy import select

from mailwright.mailstore.api_views import remove_entry
from mailwright.services import Services
from mailwright.storage.models import Mailbox, MailboxEntry, Message


async def entries_of(svc: Services, principal_id: str, message_id: int) -> list[tuple[int, int]]:
    """(mailbox id, uid) of every entry of this account's message."""
    q = (select(MailboxEntry.mailbox_id, MailboxEntry.uid)
         .join(Message, Message.id == MailboxEntry.message_id)
         .join(Mailbox, Mailbox.id == MailboxEntry.mailbox_id)
         .where(Message.id == message_id, Message.principal_id == principal_id,
                Mailbox.principal_id == principal_id))
    async with svc.db.read() as s:
        return [(int(b), int(u)) for b, u in (await s.execute(q)).all()]


async def remove_message(svc: Services, principal_id: str, message_id: int) -> bool:
    """Remove the message from every mailbox; False when it was not there (already gone)."""
    removed = False
    for box, uid in await entries_of(svc, principal_id, message_id):
        removed = await remove_entry(svc, principal_id, box, uid) or removed
    return removed

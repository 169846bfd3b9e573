"""Mailboxes: the default set, lookups, UID/modseq allocation.

UIDVALIDITY is the creation time in seconds (+ a counter for mailboxes made in the same
second), as Dovecot does, so a re-created mailbox never reuses a UIDVALIDITY.
"""

from __future__ import annotations

import time

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from mailwright.storage.models import Mailbox

DEFAULT_MAILBOXES: list[tuple[str, str | None]] = [
    ("INBOX", None),
    ("Drafts", "\\Drafts"),
    ("Sent", "\\Sent"),
    ("Trash", "\\Trash"),
    ("Junk", "\\Junk"),
    ("Archive", "\\Archive"),
]

_last_uidvalidity = 0


def new_uidvalidity() -> int:
    global _last_uidvalidity
    v = max(int(time.time()), _last_uidvalidity + 1)
    _last_uidvalidity = v
    return v


async def ensure_defaults(session: AsyncSession, principal_id: str) -> None:
    have = set(
        (await session.execute(select(Mailbox.name).where(Mailbox.principal_id == principal_id))).scalars()
    )
    for name, special in DEFAULT_MAILBOXES:
        if name not in have:
            session.add(Mailbox(principal_id=principal_id, name=name, special_use=special,
                                uidvalidity=new_uidvalidity(), uidnext=1, highestmodseq=1))
    await session.flush()


async def get_by_name(session: AsyncSession, principal_id: str, name: str) -> Mailbox | None:
    if name.upper() == "INBOX":
        name = "INBOX"
    q = select(Mailbox).where(Mailbox.principal_id == principal_id, Mailbox.name == name)
    return (await session.execute(q)).scalar_one_or_none()


async def get_by_special_use(session: AsyncSession, principal_id: str, special_use: str) -> Mailbox | None:
    q = select(Mailbox).where(Mailbox.principal_id == principal_id, Mailbox.special_use == special_use)
    return (await session.execute(q)).scalars().first()


async def list_for(session: AsyncSession, principal_id: str) -> list[Mailbox]:
    q = select(Mailbox).where(Mailbox.principal_id == principal_id).order_by(Mailbox.name)
    return list((await session.execute(q)).scalars())


async def allocate(session: AsyncSession, mailbox_id: int, count: int = 1) -> tuple[int, int]:
    """Reserve `count` UIDs and one new modseq; returns (first uid, modseq).

    One UPDATE ... RETURNING: the row lock serialises concurrent deliveries on PostgreSQL,
    the writer lock does on SQLite.
    """
    stmt = (
        update(Mailbox)
        .where(Mailbox.id == mailbox_id)
        .values(uidnext=Mailbox.uidnext + count, highestmodseq=Mailbox.highestmodseq + 1)
        .returning(Mailbox.uidnext, Mailbox.highestmodseq)
    )
    uidnext, modseq = (await session.execute(stmt)).one()
    return int(uidnext) - count, int(modseq)


async def bump_modseq(session: AsyncSession, mailbox_id: int) -> int:
    stmt = (
        update(Mailbox)
        .where(Mailbox.id == mailbox_id)
        .values(highestmodseq=Mailbox.highestmodseq + 1)
        .returning(Mailbox.highestmodseq)
    )
    return int((await session.execute(stmt)).scalar_one())

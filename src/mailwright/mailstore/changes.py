"""Changing mail: append, flags, expunge, copy, move — the writes IMAP, POP3, JMAP and the REST
dialects share.

Every change bumps the mailbox's HIGHESTMODSEQ once per command and stamps the touched entries
with it; expunges leave tombstones (uid, modseq) so CONDSTORE/QRESYNC and JMAP /changes can
answer "what changed since N". Quota is charged per message row: an account's message filed in
several mailboxes (COPY, JMAP mailboxIds) counts once, as JMAP defines it, so COPY within an
account never exceeds a quota; APPEND and delivery can.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from mailwright.directory.errors import QuotaExceeded
from mailwright.events.bus import Event
from mailwright.mailstore import mailboxes, quota
from mailwright.mailstore.messages import Stored, _thread_for, message_row
from mailwright.mailstore.mime import parse_message
from mailwright.services import Services
from mailwright.storage.models import Blob, MailboxEntry, Message, Principal, Tombstone, utcnow

SYSTEM_FLAGS = {f.lower(): f for f in ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft")}


def normalize_flags(flags: list[str] | str) -> list[str]:
    """Canonical spelling for system flags, keywords as given; order kept, duplicates dropped."""
    items = flags.split() if isinstance(flags, str) else flags
    out: dict[str, str] = {}
    for f in items:
        canon = SYSTEM_FLAGS.get(f.lower(), f)
        out.setdefault(canon.lower(), canon)
    return list(out.values())


async def append(svc: Services, principal_id: str, mailbox_id: int, raw: bytes, *, flags: list[str] | None = None,
                 internal_date: datetime | None = None) -> Stored:
    parsed = parse_message(raw)
    async with svc.db.read() as s:
        qc = await quota.check(s, principal_id, len(raw))
    if not qc.ok:
        raise QuotaExceeded("mailbox quota exceeded")
    digest = await svc.blobs.put(raw)
    async with svc.db.write() as s:
        if await s.get(Blob, digest) is None:
            s.add(Blob(hash=digest, size=len(raw)))
        thread_id = await _thread_for(s, principal_id, parsed)
        msg = message_row(principal_id, digest, len(raw), parsed, internal_date or utcnow(), None, thread_id,
                          parsed.vsize)
        s.add(msg)
        await s.flush()
        uid, modseq = await mailboxes.allocate(s, mailbox_id)
        s.add(MailboxEntry(mailbox_id=mailbox_id, message_id=msg.id, uid=uid, modseq=modseq,
                           flags=" ".join(normalize_flags(flags or []))))
        charge = Principal.used_bytes + len(raw)
        await s.execute(update(Principal).where(Principal.id == principal_id).values(used_bytes=charge))
    await svc.blobs.ensure(digest, raw)
    st = Stored(principal_id, mailbox_id, msg.id, uid, modseq, thread_id)
    await svc.events.publish(Event(type="message.added", principal_id=principal_id, mailbox_id=mailbox_id,
                                   modseq=modseq, uids=(uid,), data={"message_id": msg.id}))
    return st


async def store_flags(
    svc: Services, principal_id: str, mailbox_id: int, uids: list[int], mode: str, flags: list[str],
    *, unchanged_since: int | None = None,
) -> tuple[list[tuple[int, str, int]], list[int]]:
    """mode: set | add | remove. Returns ([(uid, new flags, modseq)], [uids failing UNCHANGEDSINCE])."""
    wanted = normalize_flags(flags)
    changed: list[tuple[int, str, int]] = []
    failed: list[int] = []
    if not uids:
        return changed, failed
    async with svc.db.write() as s:
        rows = (await s.execute(
            select(MailboxEntry).where(MailboxEntry.mailbox_id == mailbox_id, MailboxEntry.uid.in_(uids))
        )).scalars().all()
        updates: list[tuple[MailboxEntry, str]] = []
        for e in rows:
            if unchanged_since is not None and e.modseq > unchanged_since:
                failed.append(int(e.uid))
                continue
            current = normalize_flags(e.flags)
            if mode == "set":
                new = wanted
            elif mode == "add":
                new = current + [f for f in wanted if f.lower() not in {c.lower() for c in current}]
            else:
                drop = {f.lower() for f in wanted}
                new = [c for c in current if c.lower() not in drop]
            new_s = " ".join(new)
            if new_s != e.flags:
                updates.append((e, new_s))
        if updates:
            modseq = await mailboxes.bump_modseq(s, mailbox_id)
            for e, new_s in updates:
                e.flags = new_s
                e.modseq = modseq
                changed.append((int(e.uid), new_s, modseq))
    if changed:
        await svc.events.publish(Event(type="flags.changed", principal_id=principal_id, mailbox_id=mailbox_id,
                                       modseq=changed[0][2], uids=tuple(u for u, _, _ in changed)))
    return changed, failed


async def _remove_entries(s: AsyncSession, principal_id: str, mailbox_id: int, uids: list[int], modseq: int
                          ) -> list[str]:
    """Delete entries, write tombstones, drop message rows left in no mailbox; returns freed blob hashes."""
    msg_ids = list((await s.execute(
        select(MailboxEntry.message_id).where(MailboxEntry.mailbox_id == mailbox_id, MailboxEntry.uid.in_(uids))
    )).scalars())
    await s.execute(delete(MailboxEntry).where(MailboxEntry.mailbox_id == mailbox_id, MailboxEntry.uid.in_(uids)))
    s.add_all([Tombstone(mailbox_id=mailbox_id, uid=u, modseq=modseq) for u in uids])
    if not msg_ids:
        return []
    still = set((await s.execute(
        select(MailboxEntry.message_id).where(MailboxEntry.message_id.in_(msg_ids))
    )).scalars())
    orphans = [m for m in set(msg_ids) if m not in still]
    return await delete_messages(s, principal_id, orphans)


async def delete_messages(s: AsyncSession, principal_id: str, message_ids: list[int]) -> list[str]:
    """Delete message rows (and their entries), refund quota; returns blob hashes no longer used."""
    if not message_ids:
        return []
    rows = (await s.execute(select(Message.id, Message.size, Message.blob_hash).where(
        Message.id.in_(message_ids), Message.principal_id == principal_id))).all()
    if not rows:
        return []
    freed = sum(int(r[1]) for r in rows)
    await s.execute(delete(Message).where(Message.id.in_([r[0] for r in rows])))
    await s.execute(update(Principal).where(Principal.id == principal_id).values(
        used_bytes=func.max(Principal.used_bytes - freed, 0) if s.get_bind().dialect.name == "sqlite"
        else func.greatest(Principal.used_bytes - freed, 0)))
    return await unreferenced_blobs(s, {str(r[2]) for r in rows})


async def unreferenced_blobs(s: AsyncSession, hashes: set[str]) -> list[str]:
    """Of these blob hashes, the ones no message (nor queued mail) uses; their rows are deleted."""
    if not hashes:
        return []
    from mailwright.storage.models import QueuedMessage

    used = set((await s.execute(select(Message.blob_hash).where(Message.blob_hash.in_(hashes)))).scalars())
    used |= set((await s.execute(select(QueuedMessage.blob_hash).where(QueuedMessage.blob_hash.in_(hashes)))).scalars())
    gone = [h for h in hashes if h not in used]
    if gone:
        await s.execute(delete(Blob).where(Blob.hash.in_(gone)))
    return gone


def remove_blob_files(svc: Services, hashes: list[str]) -> None:
    """After the commit that dropped their last reference (a crash before this leaves an orphan file)."""
    for h in hashes:
        svc.blobs.delete(h)


async def expunge(svc: Services, principal_id: str, mailbox_id: int, uids: list[int] | None = None) -> list[int]:
    """Remove \\Deleted messages (only those among `uids` when given, as UID EXPUNGE does)."""
    async with svc.db.write() as s:
        q = select(MailboxEntry.uid, MailboxEntry.flags).where(MailboxEntry.mailbox_id == mailbox_id)
        if uids is not None:
            q = q.where(MailboxEntry.uid.in_(uids))
        doomed = sorted(int(u) for u, f in (await s.execute(q)).all() if "\\deleted" in f.lower())
        freed: list[str] = []
        if doomed:
            modseq = await mailboxes.bump_modseq(s, mailbox_id)
            freed = await _remove_entries(s, principal_id, mailbox_id, doomed, modseq)
    remove_blob_files(svc, freed)
    if doomed:
        await svc.events.publish(Event(type="message.expunged", principal_id=principal_id, mailbox_id=mailbox_id,
                                       uids=tuple(doomed)))
    return doomed


async def copy(svc: Services, principal_id: str, src_id: int, uids: list[int], dst_id: int, *, move: bool = False
               ) -> list[tuple[int, int]]:
    """File the same messages in another mailbox; returns [(source uid, new uid)] in UID order.

    MOVE is COPY + expunge of the sources in the same transaction (RFC 6851 atomicity).
    """
    pairs: list[tuple[int, int]] = []
    async with svc.db.write() as s:
        rows = (await s.execute(
            select(MailboxEntry).where(MailboxEntry.mailbox_id == src_id, MailboxEntry.uid.in_(uids))
            .order_by(MailboxEntry.uid)
        )).scalars().all()
        if not rows:
            return []
        first, modseq = await mailboxes.allocate(s, dst_id, len(rows))
        for i, e in enumerate(rows):
            s.add(MailboxEntry(mailbox_id=dst_id, message_id=e.message_id, uid=first + i, modseq=modseq,
                               flags=e.flags))
            pairs.append((int(e.uid), first + i))
        if move:
            src_modseq = await mailboxes.bump_modseq(s, src_id)
            src_uids = [p[0] for p in pairs]
            await s.execute(delete(MailboxEntry).where(MailboxEntry.mailbox_id == src_id,
                                                       MailboxEntry.uid.in_(src_uids)))
            s.add_all([Tombstone(mailbox_id=src_id, uid=u, modseq=src_modseq) for u in src_uids])
    await svc.events.publish(Event(type="message.added", principal_id=principal_id, mailbox_id=dst_id,
                                   modseq=modseq, uids=tuple(p[1] for p in pairs)))
    if move:
        await svc.events.publish(Event(type="message.expunged", principal_id=principal_id, mailbox_id=src_id,
                                       uids=tuple(p[0] for p in pairs)))
    return pairs

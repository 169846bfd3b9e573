"""Mailbox CRUD for IMAP (and any dialect that manages folders): create, delete, rename,
subscribe.

Decisions, as Dovecot 2.3 behaves:
* CREATE of "a/b/c" also creates missing parents (RFC 9051 §6.3.4 SHOULD); a trailing "/" is
  dropped; an existing name (INBOX in any case) is AlreadyExists.
* DELETE of INBOX is Forbidden; a mailbox with children is refused (Invalid "has children")
  rather than turned into a \\Noselect placeholder; its messages are removed (quota refunded,
  unreferenced blobs unlinked after the commit).
* RENAME moves the children with it and keeps UIDVALIDITY; RENAME INBOX creates the target
  and moves every message into it, leaving INBOX empty (RFC 9051 §6.3.6).
"""

from __future__ import annotations

from sqlalchemy import delete, select, update

from mailwright.directory.errors import AlreadyExists, Forbidden, Invalid, NotFound
from mailwright.events.bus import Event
from mailwright.mailstore import mailboxes
from mailwright.mailstore.imapview import canonical
from mailwright.services import Services
from mailwright.storage.models import Mailbox, MailboxEntry

MAX_NAME = 1000
MAX_DEPTH = 32


def validate(name: str) -> str:
    name = canonical(name.rstrip("/"))
    if not name or len(name.encode("utf-8", "surrogateescape")) > MAX_NAME:
        raise Invalid("invalid mailbox name")
    parts = name.split("/")
    if len(parts) > MAX_DEPTH or any(p == "" for p in parts):
        raise Invalid("invalid mailbox name")
    if any(ord(c) < 0x20 or c == "\x7f" for c in name) or "*" in name or "%" in name:
        raise Invalid("invalid characters in mailbox name")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError as e:
        raise Invalid("mailbox name is not UTF-8") from e
    return name


async def create(svc: Services, principal_id: str, name: str, special_use: str | None = None) -> None:
    name = validate(name)
    parts = name.split("/")
    async with svc.db.write() as s:
        have = set((await s.execute(select(Mailbox.name).where(Mailbox.principal_id == principal_id))).scalars())
        if name in have:
            raise AlreadyExists("mailbox already exists")
        for i in range(1, len(parts) + 1):
            n = "/".join(parts[:i])
            if n not in have:
                s.add(Mailbox(principal_id=principal_id, name=n, special_use=special_use if n == name else None,
                              uidvalidity=mailboxes.new_uidvalidity(), uidnext=1, highestmodseq=1, subscribed=False))
        await s.flush()
    await svc.events.publish(Event(type="mailbox.changed", principal_id=principal_id))


async def delete_mailbox(svc: Services, principal_id: str, name: str) -> None:
    from mailwright.mailstore.changes import delete_messages, remove_blob_files

    name = canonical(name)
    if name == "INBOX":
        raise Forbidden("INBOX cannot be deleted")
    async with svc.db.write() as s:
        box = await mailboxes.get_by_name(s, principal_id, name)
        if box is None:
            raise NotFound("mailbox does not exist")
        child = (await s.execute(select(Mailbox.id).where(
            Mailbox.principal_id == principal_id, Mailbox.name.startswith(name + "/", autoescape=True)).limit(1)
        )).first()
        if child is not None:
            raise Invalid("mailbox has children, delete them first")
        msg_ids = list((await s.execute(select(MailboxEntry.message_id).where(MailboxEntry.mailbox_id == box.id)
                                        )).scalars())
        await s.execute(delete(MailboxEntry).where(MailboxEntry.mailbox_id == box.id))
        freed: list[str] = []
        if msg_ids:
            still = set((await s.execute(select(MailboxEntry.message_id).where(
                MailboxEntry.message_id.in_(msg_ids)))).scalars())
            freed = await delete_messages(s, principal_id, [m for m in set(msg_ids) if m not in still])
        await s.execute(delete(Mailbox).where(Mailbox.id == box.id))
    remove_blob_files(svc, freed)
    await svc.events.publish(Event(type="mailbox.changed", principal_id=principal_id, mailbox_id=box.id))


async def rename(svc: Services, principal_id: str, old: str, new: str) -> None:
    from mailwright.mailstore.changes import copy

    old = canonical(old)
    new = validate(new)
    if old == "INBOX":
        async with svc.db.read() as s:
            src = await mailboxes.get_by_name(s, principal_id, "INBOX")
            if src is None:
                raise NotFound("mailbox does not exist")
            src_id = src.id
        await create(svc, principal_id, new)
        async with svc.db.read() as s:
            dst = await mailboxes.get_by_name(s, principal_id, new)
            uids = list((await s.execute(select(MailboxEntry.uid).where(MailboxEntry.mailbox_id == src_id)
                                         )).scalars())
        if dst is not None and uids:
            await copy(svc, principal_id, src_id, [int(u) for u in uids], dst.id, move=True)
        return
    if new == "INBOX" or new.startswith(old + "/"):
        raise Invalid("cannot rename a mailbox to that name")
    async with svc.db.write() as s:
        boxes = {m.name: m for m in (await s.execute(select(Mailbox).where(Mailbox.principal_id == principal_id)
                                                    )).scalars()}
        if old not in boxes:
            raise NotFound("mailbox does not exist")
        if new in boxes:
            raise AlreadyExists("target mailbox already exists")
        for n, m in boxes.items():
            if n == old or n.startswith(old + "/"):
                await s.execute(update(Mailbox).where(Mailbox.id == m.id).values(name=new + n[len(old):]))
        parts = new.split("/")
        for i in range(1, len(parts)):
            n = "/".join(parts[:i])
            if n not in boxes:
                s.add(Mailbox(principal_id=principal_id, name=n, uidvalidity=mailboxes.new_uidvalidity(),
                              uidnext=1, highestmodseq=1, subscribed=False))
    await svc.events.publish(Event(type="mailbox.changed", principal_id=principal_id))


async def set_subscribed(svc: Services, principal_id: str, name: str, subscribed: bool) -> None:
    name = canonical(name)
    async with svc.db.write() as s:
        res = await s.execute(update(Mailbox).where(Mailbox.principal_id == principal_id, Mailbox.name == name)
                              .values(subscribed=subscribed))
        if not res.rowcount and subscribed:  # type: ignore[attr-defined]
            raise NotFound("mailbox does not exist")

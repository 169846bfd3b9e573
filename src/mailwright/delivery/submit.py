"""Submission: what happens to a message an authenticated account sends (SMTP submission, the
agent/REST send APIs). The protocol layers call :func:`submit`; every rule lives here once.

Decisions (where the issue leaves room):

* **Who may send as whom.** The envelope sender and every ``From:`` address must be one of the
  account's own addresses (primary or alias), or the address of a *list* the account is a
  member of (a team address its members answer from, as Stalwart and Google Groups allow).
  A missing ``From:`` is added from the envelope sender (RFC 6409 8.1 lets an MSA complete a
  message); the null sender ``<>`` is never accepted from a client. Refusals raise
  :class:`SenderNotAllowed` (SMTP 553 5.7.1, API 403).
* **Send limits** (see ``limits.py``): counted per message, checked after the sender check and
  before anything is stored; :class:`SendLimitExceeded` carries ``retry_after``.
* **Headers.** ``Message-ID: <uuid@hostname>`` and ``Date`` are added when missing, and a
  ``Received`` header naming the client IP is prepended. ``Bcc``/``Resent-Bcc`` (and any
  ``Return-Path``) are removed, as Postfix's cleanup does. Line endings are made CRLF.
* **DKIM.** Signed with every active key of the ``From:`` domain (ed25519-sha256 and
  rsa-sha256 side by side). A broken key is logged and the message goes unsigned rather than
  being lost.
* **Routing.** Each recipient goes through ``directory.routing``: local mailboxes are delivered
  at once (one transaction, 250 means stored); external members of a local list and remote
  addresses are queued (one queue message for all of them). An unknown local address or a
  suspended local tenant is not delivered and is reported in ``SubmitResult.rejected``
  (the SMTP layer refuses those at RCPT already, so this is for API senders and races).
* **Sent copy** only when the caller asks (``save_sent=True``): IMAP clients file their own
  copy with APPEND, so the SMTP submission server passes False; the send APIs pass True.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from email import message_from_bytes
from email.policy import compat32
from email.utils import format_datetime, getaddresses

from sqlalchemy import select

from mailwright.directory import dkim as dkim_store
from mailwright.directory import routing
from mailwright.directory.errors import Invalid
from mailwright.directory.logins import Account
from mailwright.directory.names import normalize_address
from mailwright.directory.principals import addresses_of
from mailwright.mailauth.dkim import DkimKey, dkim_sign
from mailwright.mailstore import messages, quota
from mailwright.services import Services
from mailwright.storage.models import Address, ListMember, Principal, utcnow

from .limits import SendLimitExceeded, check_and_count
from .queue import enqueue

__all__ = ["SendLimitExceeded", "SenderNotAllowed", "SubmitResult", "allowed_senders", "prepare", "submit"]

log = logging.getLogger(__name__)


class SenderNotAllowed(Exception):
    """The envelope sender or a From: address is not one the account may use."""


@dataclass
class SubmitResult:
    message_id: str  # the Message-ID header value, with angle brackets
    local: list[str]  # recipients delivered into local mailboxes
    queued: list[str]  # recipients queued for remote delivery
    queue_id: int | None
    rejected: dict[str, str] = field(default_factory=dict)  # recipient -> reason (unknown, deferred, quota)


def _crlf(raw: bytes) -> bytes:
    if b"\n" not in raw:
        return raw
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


_STRIP = (b"bcc:", b"resent-bcc:", b"return-path:")


def _strip_headers(head: bytes) -> bytes:
    """Drop Bcc/Resent-Bcc (the recipients must not see them) and Return-Path (the final MTA's
    job), folded continuation lines included, as Postfix's cleanup does."""
    out: list[bytes] = []
    dropping = False
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):
            if not dropping:
                out.append(line)
            continue
        dropping = line.lower().startswith(_STRIP)
        if not dropping:
            out.append(line)
    return b"\r\n".join(out)


def _split(raw: bytes) -> tuple[bytes, bytes]:
    """Header block (ending with CRLF) and body (after the blank line)."""
    if raw.startswith(b"\r\n"):
        return b"", raw[2:]
    idx = raw.find(b"\r\n\r\n")
    if idx < 0:
        return raw if raw.endswith(b"\r\n") else raw + b"\r\n", b""
    return raw[: idx + 2], raw[idx + 4 :]


async def allowed_senders(svc: Services, principal_id: str) -> set[str]:
    """The account's addresses plus those of lists it is a member of."""
    async with svc.db.read() as s:
        own = set(await addresses_of(s, principal_id))
        p = await s.get(Principal, principal_id)
        if p is not None and "@" in p.name:
            own.add(p.name.lower())
        if own:
            q = (
                select(Address.address)
                .join(ListMember, ListMember.list_id == Address.principal_id)
                .where(ListMember.member.in_(own))
            )
            own |= set((await s.execute(q)).scalars())
    return own


@dataclass
class Prepared:
    raw: bytes
    message_id: str
    from_domain: str


def prepare(raw: bytes, mail_from: str, allowed: set[str], hostname: str, client_ip: str | None,
            protocol: str = "ESMTPSA") -> Prepared:
    """Check the From: header, add Message-ID/Date/From when missing, prepend Received."""
    raw = _crlf(raw)
    head, body = _split(raw)
    head = _strip_headers(head)
    parsed = message_from_bytes(head + b"\r\n", policy=compat32)
    from_values = [str(v) for v in parsed.get_all("From", [])]
    froms = [a for _, a in getaddresses(from_values) if a]
    extra: list[bytes] = []
    if not from_values:
        extra.append(f"From: <{mail_from}>\r\n".encode())
        froms = [mail_from]
    if not froms:
        raise SenderNotAllowed("the From: header has no address")
    for addr in froms:
        try:
            norm = normalize_address(addr)
        except Invalid:
            raise SenderNotAllowed(f"From: address {addr!r} is not valid") from None
        if norm not in allowed:
            raise SenderNotAllowed(f"not allowed to send as {addr}")
    from_domain = normalize_address(froms[0]).rpartition("@")[2]
    message_id = str(parsed.get("Message-ID", "") or "").strip()
    if not message_id:
        message_id = f"<{uuid.uuid4()}@{hostname}>"
        extra.append(f"Message-ID: {message_id}\r\n".encode())
    now = utcnow()
    if not parsed.get("Date"):
        extra.append(f"Date: {format_datetime(now)}\r\n".encode())
    peer = f"[{client_ip}] ([{client_ip}])" if client_ip else "localhost"
    qid = uuid.uuid4().hex[:12].upper()
    received = (f"Received: from {peer}\r\n\tby {hostname} (Mailwright) with {protocol} id {qid};\r\n"
                f"\t{format_datetime(now)}\r\n").encode()
    return Prepared(raw=received + head + b"".join(extra) + b"\r\n" + body, message_id=message_id,
                    from_domain=from_domain)


async def sign(svc: Services, raw: bytes, domain: str) -> bytes:
    """DKIM-sign with every active key of `domain`; unsigned (and logged) if a key is unusable."""
    async with svc.db.read() as s:
        keys: list[DkimKey] = await dkim_store.signing_keys(s, domain)
    if not keys:
        return raw
    try:
        return await asyncio.to_thread(dkim_sign, raw, keys)
    except ValueError:
        log.exception("DKIM signing for %s failed; sending unsigned", domain)
        return raw


async def submit(
    svc: Services,
    account: Account,
    mail_from: str,
    rcpts: list[str],
    raw: bytes,
    *,
    save_sent: bool = False,
    client_ip: str | None = None,
    protocol: str = "ESMTPSA",
) -> SubmitResult:
    """Send `raw` from `account`: check, count, complete, sign, deliver locally, queue the rest."""
    allowed = await allowed_senders(svc, account.principal_id)
    if not mail_from:
        raise SenderNotAllowed("the null sender is not allowed for submission")
    try:
        sender = normalize_address(mail_from)
    except Invalid:
        raise SenderNotAllowed(f"envelope sender {mail_from!r} is not valid") from None
    if sender not in allowed:
        raise SenderNotAllowed(f"not allowed to send as {mail_from}")
    prepared = prepare(raw, sender, allowed, svc.settings.hostname, client_ip, protocol)
    await check_and_count(svc, account.principal_id)
    signed = await sign(svc, prepared.raw, prepared.from_domain)

    result = SubmitResult(message_id=prepared.message_id, local=[], queued=[], queue_id=None)
    targets: list[messages.Target] = []
    seen: set[str] = set()
    remote: list[str] = []
    async with svc.db.read() as s:
        for rcpt in dict.fromkeys(rcpts):
            try:
                addr = normalize_address(rcpt)
            except Invalid:
                result.rejected[rcpt] = "invalid address"
                continue
            route = await routing.resolve(s, addr)
            if route.kind == "relay":
                remote.append(addr)
                result.queued.append(addr)
                continue
            if route.kind != "local":
                result.rejected[addr] = "unknown" if route.kind == "unknown" else "deferred"
                continue
            full = False
            for pid in route.mailboxes:
                if pid in seen:
                    continue
                qc = await quota.check(s, pid, len(signed))
                if not qc.ok:
                    full = True
                    continue
                seen.add(pid)
                targets.append(messages.Target(principal_id=pid))
            for fwd in route.forwards:
                if fwd not in remote:
                    remote.append(fwd)
            if full and not route.forwards and not any(t.principal_id in route.mailboxes for t in targets):
                result.rejected[addr] = "quota"
            else:
                result.local.append(addr)
    if save_sent:
        targets.append(messages.Target(principal_id=account.principal_id, mailbox="\\Sent", flags="\\Seen"))
    if remote:
        result.queue_id = await enqueue(svc, signed, sender, remote, tenant_id=account.tenant_id,
                                        principal_id=account.principal_id, kind="submission")
    if targets:
        await messages.deliver(svc, signed, targets, mail_from=sender)
    return result

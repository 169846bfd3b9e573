"""Composing mail for the REST send APIs, and sending it through the one submission path.

`compose` builds a MIME message from API fields (to, cc, bcc, subject, plain/HTML body,
reply-to) with `email.message.EmailMessage` (policy=default: RFC 2047 headers, 7bit/QP/base64
chosen per part). When the message replies to a stored one, `In-Reply-To` is the parent's
Message-ID and `References` the parent's References + its Message-ID (RFC 5322 3.6.4), and the
subject gets one "Re: " unless it already has one — so every client (and our own threading at
delivery) files it in the parent's thread. `send` hands the bytes to
`delivery.submit.submit(..., save_sent=True)` (sender check, send limits, DKIM, local delivery,
queue), then finds the stored Sent copy to answer with its id and thread and announces
`message.sent` on the event bus.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from email.headerregistry import Address as HeaderAddress
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

from mailwright.directory.errors import Invalid, MissingField
from mailwright.directory.logins import Account
from mailwright.directory.names import normalize_address
from mailwright.services import Services
from mailwright.storage.models import Message, utcnow


@dataclass
class Draft:
    """What a caller wants to send (API field names mapped by the dialect)."""

    to: list[str] = field(default_factory=list)
    cc: list[str] = field(default_factory=list)
    bcc: list[str] = field(default_factory=list)
    subject: str = ""
    text: str | None = None
    html: str | None = None
    reply_to: list[str] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)


def address_list(value: object, field_name: str) -> list[str]:
    """A string (comma-separated allowed) or a list of strings -> validated addresses."""
    if value is None or value == "" or value == []:
        return []
    items: list[object]
    if isinstance(value, str):
        items = [v for v in value.split(",") if v.strip()]
    elif isinstance(value, list):
        items = list(value)
    else:
        raise Invalid(f"{field_name} must be a string or a list of strings", field=field_name)
    out: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise Invalid(f"{field_name} must be a string or a list of strings", field=field_name)
        _, addr = parseaddr(item)
        out.append(normalize_address(addr or item, field=field_name))
    return out


def _subject_for_reply(subject: str, parent: Message) -> str:
    base = subject or parent.subject or ""
    return base if base[:3].lower() == "re:" else f"Re: {base}"


def compose(sender: str, display_name: str | None, d: Draft, *, hostname: str, parent: Message | None = None,
            message_id: str | None = None, draft: bool = False) -> tuple[bytes, str]:
    """The raw message and its Message-ID (a draft may lack recipients and keeps its Bcc)."""
    if not draft and not d.to and not d.cc and not d.bcc:
        raise MissingField("field 'to' is required", field="to")
    if d.text is None and d.html is None:
        d.text = ""
    msg = EmailMessage()
    local, _, domain = sender.partition("@")
    msg["From"] = HeaderAddress(display_name=display_name or "", username=local, domain=domain)
    if d.to:
        msg["To"] = ", ".join(d.to)
    if d.cc:
        msg["Cc"] = ", ".join(d.cc)
    if draft and d.bcc:
        msg["Bcc"] = ", ".join(d.bcc)
    if d.reply_to:
        msg["Reply-To"] = ", ".join(d.reply_to)
    subject = d.subject
    if parent is not None:
        subject = _subject_for_reply(subject, parent)
    msg["Subject"] = subject
    msg["Date"] = format_datetime(utcnow())
    mid = message_id or f"<{uuid.uuid4()}@{hostname}>"
    msg["Message-ID"] = mid
    if parent is not None and parent.message_id_header:
        msg["In-Reply-To"] = parent.message_id_header
        refs = (parent.references or "").split() + [parent.message_id_header]
        msg["References"] = " ".join(dict.fromkeys(refs))
    for k, v in d.headers.items():
        msg[k] = v
    if d.text is not None:
        msg.set_content(d.text)
        if d.html is not None:
            msg.add_alternative(d.html, subtype="html")
    else:
        msg.set_content(d.html or "", subtype="html")
    return msg.as_bytes(), mid


@dataclass(frozen=True)
class Sent:
    message_id: int | None  # the stored Sent copy
    thread_id: str | None
    rfc_message_id: str
    local: list[str]
    queued: list[str]
    rejected: dict[str, str]


async def send(svc: Services, account: Account, sender: str, display_name: str | None, d: Draft, *,
               parent: Message | None = None, client_ip: str | None = None) -> Sent:
    """Compose and submit. Raises SendLimitExceeded / SenderNotAllowed from delivery.submit."""
    from mailwright.delivery.submit import submit
    from mailwright.events.webhooks import publish_sent
    from mailwright.mailstore.api_views import find_by_header_id

    raw, mid = compose(sender, display_name, d, hostname=svc.settings.hostname, parent=parent)
    if len(raw) > svc.settings.max_message_size:  # what SMTP SIZE would refuse (552 5.3.4)
        raise Invalid(f"message exceeds the size limit of {svc.settings.max_message_size} bytes", field="plainBody")
    rcpts = list(dict.fromkeys([*d.to, *d.cc, *d.bcc]))
    result = await submit(svc, account, sender, rcpts, raw, save_sent=True, client_ip=client_ip, protocol="HTTPS")
    copy = await _sent_copy(svc, account.principal_id, result.message_id) or await find_by_header_id(
        svc, account.principal_id, result.message_id)
    if copy is not None:
        await publish_sent(svc, account.principal_id, None, copy.id)
    return Sent(copy.id if copy else None, copy.thread_id if copy else None, result.message_id,
                result.local, result.queued, result.rejected)


async def _sent_copy(svc: Services, principal_id: str, header_id: str) -> Message | None:
    from sqlalchemy import select

    from mailwright.storage.models import Mailbox, MailboxEntry

    q = (select(Message).join(MailboxEntry, MailboxEntry.message_id == Message.id)
         .join(Mailbox, Mailbox.id == MailboxEntry.mailbox_id)
         .where(Message.principal_id == principal_id, Message.message_id_header == header_id,
                Mailbox.special_use == "\\Sent").order_by(Message.id.desc()).limit(1))
    async with svc.db.read() as s:
        return (await s.execute(q)).scalar_one_or_none()


def new_message_id(hostname: str) -> str:
    return f"<{uuid.uuid4()}@{hostname}>"

"""Delivery Status Notifications (RFC 3464): the bounce sent back to an envelope sender, and
the one delay notice.

One DSN per queued message and batch of recipients that failed together (Postfix sends one
per message as well). Shape: ``multipart/report; report-type=delivery-status`` with a
human-readable part, the ``message/delivery-status`` part (per-message fields, then one block
per recipient with Final-Recipient, Action, Status, Remote-MTA, Diagnostic-Code) and the
original message's *headers* (``text/rfc822-headers``: enough to identify it, without sending
a possibly large body back).

Two kinds (`build_dsn(action=...)`):

* ``failed`` (5xx, or the queue lifetime ran out: 4.4.7) — the message is given up for those
  recipients.
* ``delayed`` — a *warning only*: still queued and retried, sent once per message when it has
  been undeliverable for ``queue_delay_notice_after`` (Postfix's ``delay_warning_time``; see
  `config.Settings`). Status is the 4.x.x of the last attempt and each block carries
  ``Will-Retry-Until`` (RFC 3464 2.3.9: when the message expires and will bounce). Subject
  "Delayed Mail (still being retried)", as Postfix words it.

The runner DKIM-signs them with the keys of the host name's domain (or its nearest hosted
parent), so DMARC passes at the receiver through relaxed alignment.

Rules: the DSN's own envelope sender is ``<>`` and a message whose sender was ``<>`` never
gets one, of either kind (no bounce loops, RFC 5321 6.1).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime

from mailwright.storage.models import utcnow

__all__ = ["FAILED", "DELAYED", "Failure", "build_dsn", "status_from_reply"]

FAILED = "failed"
DELAYED = "delayed"

_ENHANCED = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")


@dataclass(frozen=True)
class Failure:
    rcpt: str
    status: str  # enhanced status code, e.g. 5.1.1
    diagnostic: str  # "smtp; 550 5.1.1 ..." or our own explanation
    remote_mta: str | None = None


def status_from_reply(code: int, text: str) -> str:
    """The enhanced status code of an SMTP reply (RFC 3463), derived from the code if absent."""
    m = _ENHANCED.search(text or "")
    if m and m.group(1) == str(code)[0]:
        return m.group(0)
    return f"{str(code)[0]}.0.0" if code >= 400 else "5.0.0"


def _header_block(raw: bytes) -> bytes:
    idx = raw.find(b"\r\n\r\n")
    if idx < 0:
        idx = raw.find(b"\n\n")
        head = raw if idx < 0 else raw[: idx + 1]
        return head.replace(b"\n", b"\r\n")
    return raw[: idx + 2]


def _clean(text: str) -> str:
    return " ".join(text.replace("\r", " ").replace("\n", " ").split())


def _fmt_age(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:.1f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} hours"
    return f"{max(seconds, 0) / 60:.0f} minutes"


_ORIGINAL_ID = re.compile(rb"^Message-ID:[ \t]*(<[\x21-\x7e]{1,900}>)", re.I | re.M)


def _thread_headers(original: bytes) -> str:
    """In-Reply-To/References naming the returned message: mail clients and the agent API's
    threads then show the bounce beside the message it returns (as Gmail, Exchange do)."""
    head = original.split(b"\r\n\r\n", 1)[0]
    m = _ORIGINAL_ID.search(head)
    if m is None:
        return ""
    mid = m.group(1).decode("ascii")
    return f"In-Reply-To: {mid}\r\nReferences: {mid}\r\n"


def build_dsn(
    *,
    reporting_mta: str,
    sender: str,
    original: bytes,
    failures: list[Failure],
    arrival: datetime,
    queue_id: int,
    action: str = FAILED,
    will_retry_until: datetime | None = None,
) -> bytes:
    """The DSN message (CRLF line endings) for `failures`, addressed to `sender`.

    `action` is FAILED (a bounce) or DELAYED (a warning; `will_retry_until` is required)."""
    if action not in (FAILED, DELAYED):
        raise ValueError(f"unknown DSN action {action!r}")
    delayed = action == DELAYED
    if delayed and will_retry_until is None:
        raise ValueError("a delay notice needs will_retry_until")
    now = utcnow()
    boundary = f"=_dsn_{uuid.uuid4().hex}"
    if delayed:
        assert will_retry_until is not None
        lines = [
            "This is the mail system at host " + reporting_mta + ".",
            "",
            "####################################################################",
            "# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #",
            "####################################################################",
            "",
            f"Your message could not be delivered for {_fmt_age((now - arrival).total_seconds())}.",
            f"It will be retried until {format_datetime(will_retry_until)}; if it still cannot",
            "be delivered by then, it will be returned to you.",
            "",
        ]
        subject = "Delayed Mail (still being retried)"
        headers_title = "Delayed Message Headers"
    else:
        lines = [
            "This is the mail system at host " + reporting_mta + ".",
            "",
            "I'm sorry to have to inform you that your message could not",
            "be delivered to one or more recipients. It's attached below.",
            "",
        ]
        subject = "Undelivered Mail Returned to Sender"
        headers_title = "Undelivered Message Headers"
    for f in failures:
        lines.append(f"<{f.rcpt}>: {_clean(f.diagnostic)}")
    human = "\r\n".join(lines) + "\r\n"
    per_message = (
        f"Reporting-MTA: dns; {reporting_mta}\r\n"
        f"X-Mailwright-Queue-ID: {queue_id}\r\n"
        f"Arrival-Date: {format_datetime(arrival)}\r\n"
    )
    blocks = []
    for f in failures:
        status = f.status
        if delayed and not status.startswith("4."):
            status = "4.0.0"  # a delay is transient by definition (RFC 3464 2.3.4)
        block = f"Final-Recipient: rfc822; {f.rcpt}\r\nAction: {action}\r\nStatus: {status}\r\n"
        if f.remote_mta:
            block += f"Remote-MTA: dns; {f.remote_mta}\r\n"
        diag = _clean(f.diagnostic)
        kind = "smtp" if diag.lower().startswith("smtp;") else "x-mailwright"
        if diag.lower().startswith("smtp;"):
            diag = diag[5:].strip()
        block += f"Diagnostic-Code: {kind}; {diag}\r\nLast-Attempt-Date: {format_datetime(now)}\r\n"
        if delayed:
            assert will_retry_until is not None
            block += f"Will-Retry-Until: {format_datetime(will_retry_until)}\r\n"
        blocks.append(block)
    status_part = per_message + "\r\n" + "\r\n".join(blocks)
    headers = (
        f"From: Mail Delivery System <MAILER-DAEMON@{reporting_mta}>\r\n"
        f"To: <{sender}>\r\n"
        f"Subject: {subject}\r\n"
        f"Date: {format_datetime(now)}\r\n"
        f"Message-ID: <{uuid.uuid4()}@{reporting_mta}>\r\n"
        f"{_thread_headers(original)}"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary="{boundary}"\r\n'
    )
    body = (
        "This is a MIME-encapsulated message.\r\n\r\n"
        f"--{boundary}\r\n"
        "Content-Description: Notification\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
        f"{human}\r\n"
        f"--{boundary}\r\n"
        "Content-Description: Delivery report\r\n"
        "Content-Type: message/delivery-status\r\n\r\n"
        f"{status_part}\r\n"
        f"--{boundary}\r\n"
        f"Content-Description: {headers_title}\r\n"
        "Content-Type: text/rfc822-headers\r\n\r\n"
    ).encode("ascii", "replace")
    tail = f"\r\n--{boundary}--\r\n".encode("ascii")
    return headers.encode("ascii", "replace") + b"\r\n" + body + _header_block(original) + tail

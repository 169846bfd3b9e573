"""Delivery Status Notifications (RFC 3464): the bounce sent back to an envelope sender.

One DSN per queued message and batch of recipients that failed together (Postfix sends one
per message as well). Shape: ``multipart/report; report-type=delivery-status`` with a
human-readable part, the ``message/delivery-status`` part (per-message fields, then one block
per recipient with Final-Recipient, Action, Status, Remote-MTA, Diagnostic-Code) and the
original message's *headers* (``text/rfc822-headers``: enough to identify it, without sending
a possibly large body back).

The runner DKIM-signs it with the keys of the host name's domain (or its nearest hosted
parent), so DMARC passes at the receiver through relaxed alignment.

Rules: the DSN's own envelope sender is ``<>`` and a message whose sender was ``<>`` never
gets one (no bounce loops, RFC 5321 6.1). Delay notices are not sent (they are optional; most
operators disable Postfix's ``delay_warning_time`` too).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime

from mailwright.storage.models import utcnow

__all__ = ["Failure", "build_dsn", "status_from_reply"]

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


def build_dsn(
    *,
    reporting_mta: str,
    sender: str,
    original: bytes,
    failures: list[Failure],
    arrival: datetime,
    queue_id: int,
) -> bytes:
    """The DSN message (CRLF line endings) for `failures`, addressed to `sender`."""
    now = utcnow()
    boundary = f"=_dsn_{uuid.uuid4().hex}"
    lines = [
        "This is the mail system at host " + reporting_mta + ".",
        "",
        "I'm sorry to have to inform you that your message could not",
        "be delivered to one or more recipients. It's attached below.",
        "",
    ]
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
        block = f"Final-Recipient: rfc822; {f.rcpt}\r\nAction: failed\r\nStatus: {f.status}\r\n"
        if f.remote_mta:
            block += f"Remote-MTA: dns; {f.remote_mta}\r\n"
        diag = _clean(f.diagnostic)
        kind = "smtp" if diag.lower().startswith("smtp;") else "x-mailwright"
        if diag.lower().startswith("smtp;"):
            diag = diag[5:].strip()
        block += f"Diagnostic-Code: {kind}; {diag}\r\nLast-Attempt-Date: {format_datetime(now)}\r\n"
        blocks.append(block)
    status = per_message + "\r\n" + "\r\n".join(blocks)
    headers = (
        f"From: Mail Delivery System <MAILER-DAEMON@{reporting_mta}>\r\n"
        f"To: <{sender}>\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        f"Date: {format_datetime(now)}\r\n"
        f"Message-ID: <{uuid.uuid4()}@{reporting_mta}>\r\n"
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
        f"{status}\r\n"
        f"--{boundary}\r\n"
        "Content-Description: Undelivered Message Headers\r\n"
        "Content-Type: text/rfc822-headers\r\n\r\n"
    ).encode("ascii", "replace")
    tail = f"\r\n--{boundary}--\r\n".encode("ascii")
    return headers.encode("ascii", "replace") + b"\r\n" + body + _header_block(original) + tail

"""The ``Received:`` trace field (RFC 5321 section 4.4, RFC 3848 / RFC 6531 protocol names).

Form (Postfix's, which readers and spam filters know)::

    Received: from HELO ([IP])
    \tby HOSTNAME (Mailwright) with ESMTPS id ID
    \t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits))
    \tfor <rcpt>; DATE

No reverse-DNS lookup (it costs a round-trip per message and proves nothing); ``for`` is
only given for a single recipient, so a Bcc list is not disclosed. ``with`` is ESMTP plus
S (TLS) and A (authenticated), or UTF8SMTP* when the transaction used SMTPUTF8.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from email.utils import format_datetime

_UNSAFE = re.compile(r"[^\x21-\x7e]")


def _clean(text: str, limit: int = 255) -> str:
    """Printable ASCII without parentheses, so a hostile HELO cannot break the field."""
    return _UNSAFE.sub("?", text).replace("(", "?").replace(")", "?").replace("\\", "?")[:limit] or "unknown"


def protocol_name(*, esmtp: bool, tls: bool, authenticated: bool, utf8: bool) -> str:
    if utf8:
        base = "UTF8SMTP"
    else:
        base = "ESMTP" if esmtp else "SMTP"
    if tls:
        base += "S"
    if authenticated:
        base += "A"
    return base


_stamp_cache: tuple[int, str] = (-1, "")


def _stamp(when: datetime | None) -> str:
    """RFC 5322 date of `when` (now if None); now's is formatted once per second (email.utils
    costs ~20 µs, on every message)."""
    if when is not None:
        return format_datetime(when)
    global _stamp_cache
    now = datetime.now(UTC).replace(microsecond=0)
    second = int(now.timestamp())
    if _stamp_cache[0] != second:
        _stamp_cache = (second, format_datetime(now))
    return _stamp_cache[1]


def new_queue_id() -> str:
    return secrets.token_hex(6).upper()


def received_header(
    *,
    helo: str | None,
    client_ip: str,
    hostname: str,
    protocol: str,
    queue_id: str,
    tls: str | None,
    recipients: list[str],
    when: datetime | None = None,
) -> bytes:
    lines = [f"Received: from {_clean(helo or 'unknown')} ([{_clean(client_ip, 64)}])",
             f"\tby {_clean(hostname)} (Mailwright) with {protocol} id {queue_id}"]
    if tls:
        lines.append(f"\t(using {tls})")  # built by us from the ssl object, not client text
    stamp = _stamp(when)
    if len(recipients) == 1:
        lines.append(f"\tfor <{_clean(recipients[0], 320)}>; {stamp}")
    else:
        lines[-1] += ";"
        lines.append(f"\t{stamp}")
    return ("\r\n".join(lines) + "\r\n").encode("ascii")

"""Per-connection SMTP limits, taken from settings once per listener.

Decisions (Postfix's defaults where it has one):

- ``timeout``: client silence between commands (and between chunks inside DATA) before we
  close the connection; RFC 5321 4.5.3.2 suggests 5 minutes. ``data_timeout`` bounds the
  whole DATA phase, so a client trickling one byte a minute cannot hold a slot forever.
- ``max_recipients``: RCPT commands per message (RFC 5321 4.5.3.1.8 minimum is 100, Postfix
  ``smtpd_recipient_limit`` is 1000); one more gets ``452 4.5.3`` and the client sends the
  rest in another transaction.
- ``max_commands``: commands per connection; ``max_errors``: 4xx/5xx replies per connection
  (Postfix ``smtpd_hard_error_limit`` = 20). Past either: ``421 4.7.0`` and hang up.
- ``max_line_length``: octets per DATA line. RFC 5322 says 998; real mail (HTML from some
  generators) breaks it and Postfix accepts any length, so we accept up to this bound and
  answer ``500 5.5.6`` beyond it. Command lines keep aiosmtpd's RFC limit (512 + extensions).
- ``max_message_size``: enforced while reading; the rest of an oversized DATA is read and
  discarded (never buffered), then ``552 5.3.4``.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailwright.config import Settings


@dataclass(frozen=True)
class SmtpLimits:
    timeout: float = 300.0
    data_timeout: float = 600.0
    max_recipients: int = 100
    max_commands: int = 10000
    max_errors: int = 20
    max_line_length: int = 10000
    max_message_size: int = 50 * 1024 * 1024

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpLimits:
        return cls(
            timeout=settings.smtp_timeout,
            data_timeout=settings.smtp_data_timeout,
            max_recipients=settings.smtp_max_recipients,
            max_commands=settings.smtp_max_commands,
            max_errors=settings.smtp_max_errors,
            max_line_length=settings.smtp_max_line_length,
            max_message_size=settings.max_message_size,
        )

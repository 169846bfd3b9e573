"""The submission handler (587 STARTTLS, 465 implicit TLS): authenticated clients send mail.

AUTH is required before MAIL (aiosmtpd answers 530 5.7.0). At RCPT, remote addresses are
accepted (the client is authenticated: that is what submission is for), local ones are
checked like on the MX (unknown 550 5.1.1, suspended tenant 451 4.3.2) so the client learns
at once. After DATA everything is delivery.submit's business (sender check, Message-ID/Date,
send limits, DKIM, local delivery and queueing); its refusals map to:

- SenderNotAllowed -> 553 5.7.1 (envelope or From: not one of the account's addresses)
- SendLimitExceeded -> 451 4.7.0 with the seconds until the next allowed send

Sent copy: **never by default**. IMAP clients (Thunderbird, Apple Mail, Outlook) APPEND their
own copy to Sent after submitting, so filing one here too would double it. A client that wants
the server to file it (scripts, agents without IMAP) adds the private MAIL FROM parameter
``XSAVESENT`` (advertised in EHLO); the setting ``smtp_save_sent`` turns it on for everyone.
"""

from __future__ import annotations

import logging

from aiosmtpd.smtp import SMTP, Envelope, Session

from mailwright.delivery.limits import SendLimitExceeded
from mailwright.delivery.submit import SenderNotAllowed, submit
from mailwright.directory import routing
from mailwright.directory.errors import Invalid, QuotaExceeded
from mailwright.directory.logins import Account
from mailwright.directory.names import normalize_address
from mailwright.services import Services
from mailwright.smtp.inbound import envelope_sender
from mailwright.smtp.limits import SmtpLimits
from mailwright.smtp.protocol import MailwrightSMTP
from mailwright.smtp.received import protocol_name

log = logging.getLogger(__name__)


class SubmissionHandler:
    def __init__(self, svc: Services, limits: SmtpLimits | None = None) -> None:
        self.svc = svc
        self.limits = limits or SmtpLimits.from_settings(svc.settings)

    def extra_ehlo_keywords(self, server: SMTP) -> list[str]:
        return ["XSAVESENT"]

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if len(envelope.rcpt_tos) >= self.limits.max_recipients:
            return "452 4.5.3 Too many recipients"
        try:
            addr = normalize_address(address)
        except Invalid:
            return "553 5.1.3 Bad recipient address syntax"
        async with self.svc.db.read() as s:
            route = await routing.resolve(s, addr)
        if route.kind == "unknown":
            return "550 5.1.1 Recipient address rejected: User unknown"
        if route.kind == "deferred":
            return "451 4.3.2 Recipient temporarily unavailable, try again later"
        envelope.rcpt_tos.append(addr)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        account = session.auth_data
        if not isinstance(account, Account):
            return "530 5.7.0 Authentication required"
        raw = envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        assert isinstance(raw, bytes)
        proto = server if isinstance(server, MailwrightSMTP) else None
        save_sent = self.svc.settings.smtp_save_sent or bool(getattr(envelope, "mw_save_sent", False))
        protocol = protocol_name(esmtp=True, tls=bool(proto and proto.tls_active), authenticated=True,
                                 utf8=bool(envelope.smtp_utf8))
        try:
            result = await submit(self.svc, account, envelope_sender(envelope), list(envelope.rcpt_tos), raw,
                                  save_sent=save_sent, client_ip=proto.client_ip if proto else None,
                                  protocol=protocol)
        except SenderNotAllowed as exc:
            return f"553 5.7.1 Sender address rejected: {exc}"
        except SendLimitExceeded as exc:
            return f"451 4.7.0 Sending limit reached, try again in {exc.retry_after} seconds"
        except QuotaExceeded:
            return "452 4.2.2 Mailbox full, try again later"
        except Exception:
            log.exception("submission failed")
            return "451 4.3.0 Temporary failure, try again later"
        if result.rejected and not result.local and not result.queued:
            return "550 5.1.1 No recipient could be delivered: " + ", ".join(sorted(result.rejected))[:200]
        return f"250 2.0.0 OK: queued as {result.message_id}"

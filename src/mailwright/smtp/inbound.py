"""The MX handler: recipients checked at RCPT, message stored durably before the 250.

aiosmtpd calls these hooks; all decisions come from the directory (routing) and mailstore
(quota, deliver) services.
"""

from __future__ import annotations

import logging
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from mailwright.directory import routing
from mailwright.directory.errors import Invalid
from mailwright.directory.names import normalize_address
from mailwright.mailstore import messages, quota
from mailwright.services import Services

log = logging.getLogger(__name__)


class InboundHandler:
    def __init__(self, svc: Services) -> None:
        self.svc = svc

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        try:
            addr = normalize_address(address)
        except Invalid:
            return "553 5.1.3 Bad recipient address syntax"
        async with self.svc.db.read() as s:
            route = await routing.resolve(s, addr)
            if route.kind == "relay":
                return "554 5.7.1 Relay access denied"
            if route.kind == "unknown":
                return "550 5.1.1 Recipient address rejected: User unknown"
            if route.kind == "deferred":
                return "451 4.3.2 Recipient temporarily unavailable, try again later"
            size = _declared_size(envelope)
            for pid in route.mailboxes:
                qc = await quota.check(s, pid, size)
                if not qc.ok:
                    if qc.too_big:
                        return "552 5.2.2 Message exceeds the recipient's storage quota"
                    return "452 4.2.2 Mailbox full, try again later"
        envelope.rcpt_tos.append(addr)
        routes: dict[str, Any] = getattr(envelope, "mw_routes", {})
        routes[addr] = route
        envelope.mw_routes = routes  # type: ignore[attr-defined]
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        assert isinstance(raw, bytes)
        routes: dict[str, routing.Route] = getattr(envelope, "mw_routes", {})
        targets: list[messages.Target] = []
        seen: set[str] = set()
        for rcpt in envelope.rcpt_tos:
            for pid in routes[rcpt].mailboxes if rcpt in routes else []:
                if pid not in seen:  # one copy per account even if several of its addresses were named
                    seen.add(pid)
                    targets.append(messages.Target(principal_id=pid))
        try:
            await messages.deliver(self.svc, raw, targets, mail_from=envelope.mail_from)
        except Exception:
            log.exception("delivery failed")
            return "451 4.3.0 Temporary failure storing the message, try again later"
        return "250 2.0.0 OK: queued"


def _declared_size(envelope: Envelope) -> int:
    for opt in envelope.mail_options or []:
        if opt.upper().startswith("SIZE="):
            try:
                return int(opt[5:])
            except ValueError:
                return 0
    return 0

"""The MX handler: recipients checked at RCPT, message authenticated, stored durably before 250.

aiosmtpd (through smtp.protocol.MailwrightSMTP) calls these hooks; every decision comes from
services: directory.routing (who is this?), mailstore.quota, mailauth.check_inbound,
delivery.srs / delivery.queue (forwards) and mailstore.messages.deliver (the durable store).

RCPT answers: relay (a domain we do not host, or any address form that is not a plain
dot-atom local part at one of our domains: quoted local parts, ``a@b@c``, IP literals)
554 5.7.1 / 553 5.1.3; unknown 550 5.1.1; suspended tenant 451 4.3.2 (the sender retries,
nothing is lost); over quota 452 4.2.2, or 552 5.2.2 when the message alone exceeds it; more
than ``smtp_max_recipients`` 452 4.5.3. Source routes (``<@a,@b:user@c>``) are reduced to
their final address by the parser, as RFC 5321 4.1.1.3 allows, and that address is judged
like any other. The MX never relays: mail leaves through the queue only as a forward of a
local list's external member (sender rewritten with SRS) or as the reversal of one of our own
SRS addresses (a bounce of such a forward going back to the original sender).

After DATA: SPF, DKIM and DMARC are checked (``smtp_verify_inbound``); DMARC reject ->
550 5.7.1, quarantine -> the recipients' Junk mailboxes. Forged Authentication-Results
claiming our hostname are removed; ours and a Received field are prepended. Local
recipients share one stored copy (one transaction for all of them); 250 only after commit.

Forwards are queued (their own durable transaction) before the local copy is filed. If the
local filing then fails, the client gets 451 and sends again, so the forward may go out twice:
at-least-once, as Postfix gives for the same failure; never lost.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from aiosmtpd.smtp import SMTP, Envelope, Session

from mailwright.delivery import queue as outbound
from mailwright.delivery import srs
from mailwright.directory import routing
from mailwright.directory.errors import Invalid
from mailwright.directory.names import normalize_address
from mailwright.mailauth import AuthResult, Resolver, check_inbound, strip_forged_results
from mailwright.mailstore import groupcommit, messages, quota
from mailwright.services import Services
from mailwright.smtp.limits import SmtpLimits
from mailwright.smtp.protocol import MailwrightSMTP, tls_description
from mailwright.smtp.received import new_queue_id, protocol_name, received_header
from mailwright.storage import sqlrun
from mailwright.storage.sqlrun import Reads

log = logging.getLogger(__name__)


@dataclass
class Accepted:
    """What one accepted RCPT means: local mailboxes and/or addresses to forward to."""

    route: routing.Route
    forward_sender_domain: str | None = None  # SRS-rewrite the sender for this domain
    srs_bounce: bool = False  # a reversed SRS address: forward with the original sender
    forwards: list[str] = field(default_factory=list)


def envelope_sender(envelope: Envelope) -> str:
    """The reverse-path without brackets; '' for the null sender."""
    mf = envelope.mail_from or ""
    return "" if mf in ("<>", "") else mf


class InboundHandler:
    def __init__(self, svc: Services, limits: SmtpLimits | None = None) -> None:
        self.svc = svc
        self.limits = limits or SmtpLimits.from_settings(svc.settings)
        st = svc.settings
        self.resolver = Resolver(st.dns_nameservers or None, st.dns_port)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if len(envelope.rcpt_tos) >= self.limits.max_recipients:
            return "452 4.5.3 Too many recipients"
        try:
            addr = normalize_address(address)
        except Invalid:
            if "@" in address.rpartition("@")[0] or address.count("@") != 1 or "[" in address:
                return "554 5.7.1 Relay access denied"
            return "553 5.1.3 Bad recipient address syntax"
        size = _declared_size(envelope)
        verdict = await sqlrun.read_with(self.svc, _judge_recipient, addr, size)
        if isinstance(verdict, str):
            return verdict
        route = verdict
        if route.kind == "srs":
            original = srs.srs_reverse(addr, srs.srs_secret(self.svc))
            if original is None:
                return "550 5.1.1 Recipient address rejected: invalid or expired SRS address"
            accepted = Accepted(route=route, srs_bounce=True, forwards=[original])
        else:
            accepted = Accepted(route=route, forward_sender_domain=addr.rpartition("@")[2],
                                forwards=list(route.forwards))
        envelope.rcpt_tos.append(addr)
        routes: dict[str, Accepted] = getattr(envelope, "mw_routes", {})
        routes[addr] = accepted
        envelope.mw_routes = routes  # type: ignore[attr-defined]
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        assert isinstance(raw, bytes)
        mail_from = envelope_sender(envelope)
        proto = server if isinstance(server, MailwrightSMTP) else None
        client_ip = proto.client_ip if proto is not None else "127.0.0.1"
        hostname = self.svc.settings.hostname
        verdict: AuthResult | None = None
        if self.svc.settings.smtp_verify_inbound:
            try:
                verdict = await check_inbound(raw, client_ip=client_ip, helo=session.host_name or "",
                                              mail_from=mail_from, authserv_id=hostname, resolver=self.resolver)
            except Exception:  # a verifier bug must not lose mail: deliver unauthenticated
                log.exception("authentication checks failed")
            if verdict is not None and verdict.action == "reject":
                dom = verdict.dmarc_domain or "the sender's domain"
                return f"550 5.7.1 Message rejected: DMARC policy of {dom} says reject"
        routes: dict[str, Accepted] = getattr(envelope, "mw_routes", {})
        rcpts = list(envelope.rcpt_tos)
        trace = received_header(
            helo=session.host_name, client_ip=client_ip, hostname=hostname,
            protocol=protocol_name(esmtp=session.extended_smtp, tls=bool(proto and proto.tls_active),
                                   authenticated=False, utf8=bool(envelope.smtp_utf8)),
            queue_id=new_queue_id(), tls=tls_description(proto.ssl_object()) if proto else None,
            recipients=rcpts,
        )
        if verdict is not None:
            stored_raw = verdict.prepend_to(trace + strip_forged_results(raw, hostname))
        else:
            stored_raw = trace + raw
        mailbox = "\\Junk" if verdict is not None and verdict.action == "quarantine" else "INBOX"
        targets: list[messages.Target] = []
        seen: set[str] = set()
        for rcpt in rcpts:
            acc = routes.get(rcpt)
            for pid in acc.route.mailboxes if acc is not None and not acc.srs_bounce else []:
                if pid not in seen:  # one copy per account even if several of its addresses were named
                    seen.add(pid)
                    targets.append(messages.Target(principal_id=pid, mailbox=mailbox))
        try:
            await self._forward(stored_raw, mail_from, [routes[r] for r in rcpts if r in routes])
            if targets:
                # crlf: DATA reading turned every bare LF into CRLF (smtp.protocol), our
                # trace headers end in CRLF
                await groupcommit.deliver(self.svc, stored_raw, targets, mail_from=mail_from or None,
                                          crlf=proto is not None)
        except Exception:
            log.exception("delivery failed")
            return "451 4.3.0 Temporary failure storing the message, try again later"
        return "250 2.0.0 OK: queued"

    async def _forward(self, raw: bytes, mail_from: str, accepted: list[Accepted]) -> None:
        """Queue forwards: list members with an SRS sender, reversed SRS bounces as they are."""
        batches: dict[tuple[str, str | None, str | None], list[str]] = {}
        done: set[str] = set()
        for acc in accepted:
            if not acc.forwards:
                continue
            if acc.srs_bounce:
                sender = mail_from
            else:
                sender = srs.srs_forward(mail_from, acc.forward_sender_domain or "", srs.srs_secret(self.svc))
            key = (sender, acc.route.tenant_id, acc.route.list_id)
            for f in acc.forwards:
                if f not in done:
                    done.add(f)
                    batches.setdefault(key, []).append(f)
        for (sender, tenant_id, list_id), rcpts in batches.items():
            await outbound.enqueue(self.svc, raw, sender, rcpts, tenant_id=tenant_id, principal_id=list_id,
                                   kind="forward")


def _judge_recipient(run: Reads, addr: str, size: int) -> routing.Route | str:
    """The route of an accepted recipient (kind "srs" for one of our SRS addresses, to be
    reversed by the caller), or the SMTP reply that refuses it. One synchronous pass of Core
    statements: this runs for every RCPT."""
    route = routing.resolve_sync(run, addr)
    if route.kind == "relay":
        return "554 5.7.1 Relay access denied"
    if route.kind == "unknown" and srs.is_srs(addr):
        route.kind = "srs"
        return route
    if route.kind == "unknown":
        return "550 5.1.1 Recipient address rejected: User unknown"
    if route.kind == "deferred":
        return "451 4.3.2 Recipient temporarily unavailable, try again later"
    if route.kind != "local":
        return "550 5.1.1 Recipient address rejected: mailbox unavailable"
    for pid in route.mailboxes:
        qc = quota.check_sync(run, pid, size)
        if not qc.ok:
            if qc.too_big:
                return "552 5.2.2 Message exceeds the recipient's storage quota"
            return "452 4.2.2 Mailbox full, try again later"
    return route


def _declared_size(envelope: Envelope) -> int:
    for opt in envelope.mail_options or []:
        if opt.upper().startswith("SIZE="):
            try:
                return int(opt[5:])
            except ValueError:
                return 0
    return 0


"""Inbound verdict: SPF + DKIM + DMARC, and the Authentication-Results field (RFC 8601).

:func:`check_inbound` is what the MX calls once per message (after DATA): it runs SPF (in a
worker thread) and DKIM (async key fetch, crypto in a thread) concurrently, then DMARC, and
renders the field with authres so the syntax is the library's, not ours.

The field is folded one result per line (``;`` + CRLF + TAB) so it stays readable and under
the 78-character guideline for typical values; it has no trailing CRLF. Prepend it with
:meth:`AuthResult.prepend_to`. Before prepending, an MX should remove any
Authentication-Results fields claiming *our* authserv-id that arrived with the message
(RFC 8601 section 5); :func:`strip_forged_results` does that.
"""

from __future__ import annotations

import asyncio
import random
import re
from dataclasses import dataclass, field
from typing import Literal

import authres
import authres.dmarc

from .dkim import DkimResult, verify_dkim
from .dmarc import DmarcResult, check_dmarc
from .resolver import Resolver
from .spf import SpfResult, check_spf

__all__ = ["AuthResult", "build_header", "check_inbound", "strip_forged_results"]

_AUTHRES = authres.FeatureContext(authres.dmarc)


@dataclass
class AuthResult:
    """Everything the delivery pipeline needs to know about a message's authenticity.

    ``dkim`` holds ``(result, d=, s=)`` per signature, topmost first (empty: unsigned).
    ``action`` is the DMARC disposition; SPF or DKIM failures alone never reject (DMARC is
    the policy layer that says whether the domain owner wants that).
    """

    spf: str
    spf_domain: str
    dkim: list[tuple[str, str, str]]
    dmarc: str
    dmarc_policy: str | None
    dmarc_domain: str
    header: str
    action: Literal["accept", "quarantine", "reject"]
    # Details for logs and debugging; not part of the stable interface.
    spf_detail: SpfResult | None = field(default=None, repr=False)
    dkim_detail: list[DkimResult] = field(default_factory=list, repr=False)
    dmarc_detail: DmarcResult | None = field(default=None, repr=False)

    def prepend_to(self, message: bytes) -> bytes:
        """``message`` with this Authentication-Results field on top, in its line ending."""
        linesep = b"\r\n" if b"\r\n" in message else b"\n"
        head = self.header.encode("utf-8").replace(b"\r\n", linesep)
        return head + linesep + message


def _comment(text: str) -> str | None:
    """An RFC 5322 comment body: printable ASCII, no parentheses or backslashes."""
    text = re.sub(r"[^\x20-\x7e]", "?", text).replace("(", "[").replace(")", "]").replace("\\", "/")
    return text[:120] or None


def build_header(authserv_id: str, spf: SpfResult, dkim: list[DkimResult], dmarc: DmarcResult) -> str:
    """Render the Authentication-Results field (folded, no trailing CRLF) with authres."""
    results: list[authres.AuthenticationResult] = []
    spf_res = authres.SPFAuthenticationResult(result=spf.result)
    if spf.domain:
        if spf.identity == "helo":
            spf_res.smtp_helo = spf.domain
        else:
            spf_res.smtp_mailfrom = spf.domain
    results.append(spf_res)
    if not dkim:
        results.append(authres.DKIMAuthenticationResult(result="none"))
    for d in dkim:
        r = authres.DKIMAuthenticationResult(
            result=d.result,
            result_comment=_comment(d.reason) if d.result != "pass" else None,
            header_d=d.domain or None,
            header_s=d.selector or None,
            header_a=d.algorithm or None,
        )
        if d.signature_b:
            # header.b (RFC 6008) tells apart several signatures of one domain.
            r.properties.append(authres.AuthenticationResultProperty("header", "b", d.signature_b))
        results.append(r)
    comment = None
    if dmarc.policy is not None:
        disposition = "none" if dmarc.action == "accept" else dmarc.action
        comment = f"p={dmarc.policy} dis={disposition}"
    elif dmarc.result in ("temperror", "permerror") and dmarc.reason:
        comment = _comment(dmarc.reason)
    results.append(
        authres.dmarc.DMARCAuthenticationResult(
            result=dmarc.result, result_comment=comment, header_from=dmarc.domain or None
        )
    )
    hdr = _AUTHRES.header(authserv_id=authserv_id, results=results)
    head = f"{hdr.HEADER_FIELD_NAME}: {hdr.authserv_id}"
    return head + "".join(f";\r\n\t{r}" for r in hdr.results)


async def check_inbound(
    message: bytes,
    *,
    client_ip: str,
    helo: str,
    mail_from: str,
    authserv_id: str,
    resolver: Resolver,
    rng: random.Random | None = None,
) -> AuthResult:
    """Authenticate an inbound message: SPF, every DKIM signature, DMARC.

    ``mail_from`` is the SMTP reverse-path (``""``/``"<>"`` = null sender: SPF then checks
    the HELO name); ``authserv_id`` names this host in the field. ``rng`` makes DMARC
    ``pct`` sampling reproducible in tests. Never raises for DNS or content problems; a
    non-IP ``client_ip`` raises ValueError (caller bug).
    """
    spf, dkim = await asyncio.gather(
        check_spf(client_ip=client_ip, helo=helo, mail_from=mail_from, resolver=resolver),
        verify_dkim(message, resolver),
    )
    dmarc = await check_dmarc(
        message,
        spf_result=spf.result,
        spf_domain=spf.domain,
        dkim_results=[(d.result, d.domain) for d in dkim],
        resolver=resolver,
        rng=rng,
    )
    return AuthResult(
        spf=spf.result,
        spf_domain=spf.domain,
        dkim=[(d.result, d.domain, d.selector) for d in dkim],
        dmarc=dmarc.result,
        dmarc_policy=dmarc.policy,
        dmarc_domain=dmarc.domain,
        header=build_header(authserv_id, spf, dkim, dmarc),
        action=dmarc.action,
        spf_detail=spf,
        dkim_detail=dkim,
        dmarc_detail=dmarc,
    )


def strip_forged_results(message: bytes, authserv_id: str) -> bytes:
    """Remove Authentication-Results fields that claim ``authserv_id`` (RFC 8601 section 5).

    Only the header block is touched; fields of other authserv-ids are kept.
    """
    sep = b"\r\n\r\n" if b"\r\n" in message else b"\n\n"
    head, found, body = message.partition(sep)
    if not found:
        head, body = message, b""
    eol = sep[: len(sep) // 2]
    lines = head.split(eol)
    fields: list[list[bytes]] = []
    for line in lines:
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1].append(line)
        else:
            fields.append([line])
    wanted = authserv_id.strip().lower().encode()
    kept: list[bytes] = []
    for f in fields:
        text = b" ".join(x.strip() for x in f)
        m = re.match(rb"(?i)authentication-results\s*:\s*([^\s;(]+)", text)
        if m and m.group(1).lower() == wanted:
            continue
        kept.extend(f)
    return eol.join(kept) + (sep + body if found else b"")

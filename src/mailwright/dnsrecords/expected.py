"""Every DNS record a domain hosted here needs, computed from the server's settings.

What and why (the same set Stalwart's `GET /api/dns/records/{domain}` publishes):

* MX -> the server's hostname (priority 10).
* SPF: `v=spf1 mx` plus the configured public IPv4/IPv6 addresses, `-all`.
* one DKIM TXT per active selector, at `<selector>._domainkey.<domain>`.
* DMARC at `_dmarc.<domain>`: the domain's own record if one was set, else `p=none` with
  aggregate reports to postmaster@ (a safe start; tighten once reports look clean).
* RFC 6186 / RFC 8314 SRV records for submission (587), submissions (465), IMAP (143),
  IMAPS (993) and POP3S (995) with the configured ports; a disabled listener (port 0) is
  published as "service not available" (`0 0 .`), as RFC 6186 section 3.4 says.
* `autoconfig` / `autodiscover` CNAMEs to the hostname (Thunderbird / Outlook), plus the
  `_autodiscover._tcp` SRV (port 443).
* MTA-STS: `_mta-sts` TXT with an id derived from the policy text (it changes exactly when the
  policy does) and an `mta-sts` CNAME to the hostname, which serves /.well-known/mta-sts.txt.
* TLS-RPT at `_smtp._tls`, reports to postmaster@.

Names are absolute (trailing dot), as Stalwart writes them. For MX and SRV, `priority` is given
separately and `content` holds the rest of the RDATA (MX: target; SRV: weight port target), the
shape DNS provider APIs take; the zone renderer joins them back.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from mailwright.config import Settings


@dataclass(frozen=True)
class DnsRecord:
    type: str
    name: str
    content: str
    priority: int | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "name": self.name, "content": self.content}
        if self.priority is not None:
            out["priority"] = self.priority
        return out


def _fqdn(name: str) -> str:
    return name if name.endswith(".") else name + "."


def mta_sts_policy(settings: Settings) -> str:
    """The MTA-STS policy file (RFC 8461 section 3.2); the same for every domain hosted here."""
    return (f"version: STSv1\r\nmode: {settings.mta_sts_mode}\r\nmx: {settings.hostname}\r\n"
            f"max_age: {settings.mta_sts_max_age}\r\n")


def expected_records(
    settings: Settings, domain: str, dkim: list[tuple[str, str]], dmarc: str | None = None
) -> list[DnsRecord]:
    """The records for `domain` (IDNA A-label form); `dkim` is [(selector, TXT value)]."""
    d = _fqdn(domain)
    host = _fqdn(settings.hostname)
    records = [DnsRecord("MX", d, host, 10)]
    spf = ["v=spf1", "mx"] + [f"ip4:{ip}" for ip in settings.public_ipv4] + [
        f"ip6:{ip}" for ip in settings.public_ipv6] + ["-all"]
    records.append(DnsRecord("TXT", d, " ".join(spf)))
    for selector, txt in dkim:
        records.append(DnsRecord("TXT", f"{selector}._domainkey.{d}", txt))
    records.append(DnsRecord("TXT", f"_dmarc.{d}", dmarc or f"v=DMARC1; p=none; rua=mailto:postmaster@{domain}"))
    for service, port in (
        ("_submission._tcp", settings.submission_port),
        ("_submissions._tcp", settings.submissions_port),
        ("_imap._tcp", settings.imap_port),
        ("_imaps._tcp", settings.imaps_port),
        ("_pop3s._tcp", settings.pop3s_port),
    ):
        content = f"1 {port} {host}" if port else "0 0 ."
        records.append(DnsRecord("SRV", f"{service}.{d}", content, 0))
    records.append(DnsRecord("SRV", f"_autodiscover._tcp.{d}", f"1 443 {host}", 0))
    records.append(DnsRecord("CNAME", f"autoconfig.{d}", host))
    records.append(DnsRecord("CNAME", f"autodiscover.{d}", host))
    policy_id = hashlib.sha256(mta_sts_policy(settings).encode()).hexdigest()[:20]
    records.append(DnsRecord("CNAME", f"mta-sts.{d}", host))
    records.append(DnsRecord("TXT", f"_mta-sts.{d}", f"v=STSv1; id={policy_id}"))
    records.append(DnsRecord("TXT", f"_smtp._tls.{d}", f"v=TLSRPTv1; rua=mailto:postmaster@{domain}"))
    return records


async def records_for_domain(session: AsyncSession, settings: Settings, domain_id: str) -> list[DnsRecord]:
    """The records for a stored domain: its active DKIM selectors and DMARC policy included."""
    from mailwright.directory import dkim
    from mailwright.storage.models import Domain

    dom = await session.get(Domain, domain_id)
    if dom is None:
        return []
    keys = [(k.selector, k.public_txt) for k in await dkim.list_for_domain(session, dom.id) if k.active]
    return expected_records(settings, dom.name, keys, dom.dmarc_record)

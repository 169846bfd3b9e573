"""Mail authentication: DKIM signing/verification, SPF, DMARC and Authentication-Results.

Every DNS lookup goes through one :class:`Resolver` (see ``resolver.py``), so tests and
operators can point SPF, DKIM and DMARC at a chosen nameserver and port. Blocking library
code (pyspf, dkimpy's crypto) runs in worker threads; nothing here blocks the event loop.

Typical use::

    resolver = Resolver(nameservers=None)          # system resolver
    signed = dkim_sign(raw, [DkimKey("a.test", "s1", "ed25519-sha256", stored_key)])
    verdict = await check_inbound(raw, client_ip=ip, helo=helo, mail_from=mail_from,
                                  authserv_id="mx.example", resolver=resolver)
    raw = verdict.prepend_to(strip_forged_results(raw, "mx.example"))
"""

from .dkim import DEFAULT_SIGNED_HEADERS, DkimKey, DkimResult, dkim_sign, generate_dkim_key, verify_dkim
from .dmarc import DmarcRecord, DmarcResult, check_dmarc, organizational_domain, parse_dmarc_record
from .resolver import DnsError, DnsPermError, DnsTempError, Resolver
from .results import AuthResult, build_header, check_inbound, strip_forged_results
from .spf import SpfResult, check_spf

__all__ = [
    "DEFAULT_SIGNED_HEADERS",
    "AuthResult",
    "DkimKey",
    "DkimResult",
    "DmarcRecord",
    "DmarcResult",
    "DnsError",
    "DnsPermError",
    "DnsTempError",
    "Resolver",
    "SpfResult",
    "build_header",
    "check_dmarc",
    "check_inbound",
    "check_spf",
    "dkim_sign",
    "generate_dkim_key",
    "organizational_domain",
    "parse_dmarc_record",
    "strip_forged_results",
    "verify_dkim",
]

"""SPF (RFC 7208) checks with pyspf, resolved through a :class:`~.resolver.Resolver`.

How pyspf is pointed at our resolver, and why this way:

pyspf's only DNS hook is the module-level function ``spf.DNSLookup``, looked up at call time
by ``spf.query.dns``. Swapping that global per check would race when two checks run in
parallel threads. Instead, on import we replace it *once* with :func:`_dispatching_lookup`,
which reads a :class:`contextvars.ContextVar` holding the lookup function of the check that
is running in the current context. ``asyncio.to_thread`` copies the caller's context into the
worker thread, so every concurrent check sees only its own resolver; code that uses pyspf
directly without setting the variable gets pyspf's original lookup, unchanged.

pyspf is blocking (it recurses through include:/redirect= doing DNS as it goes), so
:func:`check_spf` runs it in a worker thread and the lookups use the resolver's synchronous
face. Each lookup is bounded by the resolver's timeout and the whole check by pyspf's
``querytime`` (RFC 7208 section 4.6.4 recommends at least 20 s).
"""

from __future__ import annotations

import asyncio
import contextvars
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import spf as pyspf

from .resolver import Resolver

__all__ = ["SPF_RESULTS", "SpfResult", "check_spf", "check_spf_sync"]

#: Result words pyspf (and RFC 8601) use.
SPF_RESULTS = ("pass", "fail", "softfail", "neutral", "none", "temperror", "permerror")

#: Overall time budget for one SPF evaluation, all lookups included (RFC 7208 4.6.4).
SPF_QUERY_TIME = 20.0

_LookupFn = Callable[[str, str, Any, float], list[Any]]

_current_lookup: contextvars.ContextVar[_LookupFn | None] = contextvars.ContextVar(
    "mailwright_spf_lookup", default=None
)
_original_lookup: _LookupFn = pyspf.DNSLookup


def _dispatching_lookup(name: str, qtype: str, strict: Any = True, timeout: float = 20) -> list[Any]:
    """pyspf ``DNSLookup`` that routes to the resolver of the check running in this context."""
    fn = _current_lookup.get()
    if fn is None:
        return _original_lookup(name, qtype, strict, timeout)
    return fn(name, qtype, strict, timeout)


if getattr(pyspf.DNSLookup, "__name__", "") != _dispatching_lookup.__name__:
    pyspf.DNSLookup = _dispatching_lookup

_HOSTNAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z0-9-]{2,63}\.?$")


@dataclass(frozen=True)
class SpfResult:
    """Outcome of one SPF evaluation.

    ``domain`` is the identity that was checked: the MAIL FROM domain, or the HELO name when
    the reverse-path is null (RFC 7208 section 2.4). DMARC aligns on that same domain.
    """

    result: str
    domain: str
    identity: Literal["mailfrom", "helo"]
    explanation: str = ""


def _normalize_ip(client_ip: str) -> str:
    """Canonical text form of the client address; IPv4-mapped IPv6 becomes plain IPv4.

    Raises ValueError for something that is not an IP address: that is a caller bug, not a
    property of the message.
    """
    addr = ipaddress.ip_address(client_ip.strip().strip("[]").removeprefix("IPv6:"))
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return str(addr)


def _strip_path(mail_from: str) -> str:
    addr = mail_from.strip()
    if addr.startswith("<") and addr.endswith(">"):
        addr = addr[1:-1]
    return addr.strip()


def check_spf_sync(*, client_ip: str, helo: str, mail_from: str, resolver: Resolver) -> SpfResult:
    """Blocking SPF check; call it from a worker thread (see :func:`check_spf`).

    Never raises for DNS or record problems: those are ``temperror``/``permerror``.
    """
    ip = _normalize_ip(client_ip)
    sender = _strip_path(mail_from)
    helo = helo.strip().rstrip(".")
    if sender:
        identity: Literal["mailfrom", "helo"] = "mailfrom"
        domain = sender.rpartition("@")[2] if "@" in sender else helo
    else:
        identity = "helo"
        domain = helo
    domain = domain.lower().rstrip(".")
    if not _HOSTNAME.match(domain):
        # An address literal or junk HELO: there is no domain to ask (RFC 7208 2.3/4.3).
        return SpfResult("none", domain, identity, "no checkable domain")

    token = _current_lookup.set(resolver.spf_lookup)
    try:
        q = pyspf.query(i=ip, s=sender, h=helo, querytime=SPF_QUERY_TIME)
        result, _code, explanation = q.check()
    except pyspf.TempError as exc:  # defensive: query.check() normally converts these
        result, explanation = "temperror", str(exc)
    except pyspf.PermError as exc:
        result, explanation = "permerror", str(exc)
    except Exception as exc:  # pyspf has a few raw exceptions on malformed input
        result, explanation = "permerror", f"{type(exc).__name__}: {exc}"
    finally:
        _current_lookup.reset(token)
    if result not in SPF_RESULTS:
        result = "permerror"
    return SpfResult(str(result), domain, identity, str(explanation))


async def check_spf(*, client_ip: str, helo: str, mail_from: str, resolver: Resolver) -> SpfResult:
    """Evaluate SPF for an SMTP transaction without blocking the event loop.

    ``mail_from`` is the reverse-path (``""`` or ``"<>"`` for the null sender, in which case
    the HELO identity is checked). ``client_ip`` is the connecting address.
    """
    return await asyncio.to_thread(
        check_spf_sync, client_ip=client_ip, helo=helo, mail_from=mail_from, resolver=resolver
    )

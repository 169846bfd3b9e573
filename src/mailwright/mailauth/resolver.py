"""The one DNS resolver every mail-authentication lookup goes through.

Why one resolver object instead of letting dkimpy and pyspf do their own DNS:

* Tests (and operators with a split-horizon DNS) must be able to point *all* lookups at a
  given server and port; dkimpy and pyspf default to the process-wide system resolver.
* Failures have to be classified the same way everywhere: "the name has no such record"
  (NXDOMAIN / empty answer: a *permanent*, cacheable fact) versus "we could not find out"
  (timeout, SERVFAIL, nothing listening: a *temporary* error that must become
  ``temperror`` in Authentication-Results and never an exception that kills an SMTP session).

Two faces, same configuration:

* ``await resolver.query(...)`` / ``await resolver.txt(...)`` use dnspython's asyncio
  resolver and are what event-loop code (DKIM key fetch, DMARC policy discovery) calls.
* ``resolver.query_sync(...)`` and the adapters :meth:`Resolver.dkim_dnsfunc` and
  :meth:`Resolver.spf_lookup` use dnspython's blocking resolver. They exist for libraries
  with synchronous DNS hooks (dkimpy's ``dnsfunc``, pyspf's ``DNSLookup``); such library
  calls must run in a worker thread (``asyncio.to_thread``), never on the event loop.

No caching is done here on purpose: records change under tests mid-run, and a mail host that
wants caching should run a local caching resolver (unbound) and point ``nameservers`` at it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import dns.asyncresolver
import dns.exception
import dns.name
import dns.rdata
import dns.resolver

__all__ = ["DnsError", "DnsPermError", "DnsTempError", "Resolver"]


class DnsError(Exception):
    """Base class of the resolver's own errors."""


class DnsTempError(DnsError):
    """The answer could not be obtained right now (timeout, SERVFAIL, no server reachable).

    Maps to ``temperror`` in SPF/DKIM/DMARC results: the sender may retry later.
    """


class DnsPermError(DnsError):
    """The query itself is impossible (e.g. a syntactically invalid domain name).

    Maps to ``permerror``: retrying will not help.
    """


class Resolver:
    """Configurable DNS resolver shared by DKIM, SPF and DMARC checks.

    :param nameservers: IP addresses of the servers to ask; ``None`` means the system
        resolver configuration (``/etc/resolv.conf``).
    :param port: UDP/TCP port of those servers (tests use an ephemeral port).
    :param timeout: total time budget in seconds for one lookup, retries included. It bounds
        how long a single DNS problem can stall an SMTP transaction.
    """

    def __init__(self, nameservers: list[str] | None = None, port: int = 53, timeout: float = 5.0) -> None:
        if nameservers is not None and not nameservers:
            raise ValueError("nameservers must be None (system resolver) or a non-empty list")
        self.nameservers = list(nameservers) if nameservers is not None else None
        self.port = port
        self.timeout = timeout
        self._lock = threading.Lock()
        self._sync: dns.resolver.Resolver | None = None
        self._async: dns.asyncresolver.Resolver | None = None

    def __repr__(self) -> str:
        return f"Resolver(nameservers={self.nameservers!r}, port={self.port}, timeout={self.timeout})"

    # -- construction ---------------------------------------------------------------------

    def _configure(self, res: dns.resolver.BaseResolver) -> None:
        if self.nameservers is not None:
            res.nameservers = list(self.nameservers)
        res.port = self.port
        # One per-server attempt may use the whole budget; ``lifetime`` caps the total.
        res.timeout = self.timeout
        res.lifetime = self.timeout
        # Mail-auth names are always absolute; never append search domains.
        res.use_search_by_default = False

    def _sync_resolver(self) -> dns.resolver.Resolver:
        # Built lazily so a host without /etc/resolv.conf can still construct a Resolver;
        # the configuration problem then surfaces as a temperror at lookup time.
        with self._lock:
            if self._sync is None:
                try:
                    res = dns.resolver.Resolver(configure=self.nameservers is None)
                except dns.resolver.NoResolverConfiguration as exc:
                    raise DnsTempError(f"no resolver configuration: {exc}") from exc
                self._configure(res)
                self._sync = res
            return self._sync

    def _async_resolver(self) -> dns.asyncresolver.Resolver:
        with self._lock:
            if self._async is None:
                try:
                    res = dns.asyncresolver.Resolver(configure=self.nameservers is None)
                except dns.resolver.NoResolverConfiguration as exc:
                    raise DnsTempError(f"no resolver configuration: {exc}") from exc
                self._configure(res)
                self._async = res
            return self._async

    # -- queries ------------------------------------------------------------------------------

    @staticmethod
    def _qname(name: str | bytes) -> dns.name.Name:
        if isinstance(name, bytes):
            name = name.decode("ascii", "replace")
        try:
            return dns.name.from_text(name.rstrip(".") + ".")
        except dns.exception.DNSException as exc:  # EmptyLabel, LabelTooLong, NameTooLong ...
            raise DnsPermError(f"invalid domain name {name!r}: {exc}") from exc

    @staticmethod
    def _translate(exc: BaseException, qname: dns.name.Name, rdtype: str) -> DnsError | None:
        """Map a dnspython exception to ``None`` (no data) or one of our errors."""
        if isinstance(exc, dns.resolver.NXDOMAIN | dns.resolver.NoAnswer | dns.resolver.YXDOMAIN):
            return None
        if isinstance(exc, dns.exception.Timeout):
            return DnsTempError(f"timeout looking up {qname} {rdtype}")
        if isinstance(exc, dns.resolver.NoNameservers):
            return DnsTempError(f"no nameserver answered {qname} {rdtype}: {exc}")
        if isinstance(exc, dns.resolver.NoResolverConfiguration):
            return DnsTempError(f"no resolver configuration: {exc}")
        return DnsTempError(f"DNS error looking up {qname} {rdtype}: {exc!r}")

    async def query(self, name: str | bytes, rdtype: str) -> list[dns.rdata.Rdata]:
        """Resolve ``name``/``rdtype`` on the event loop.

        Returns ``[]`` when the name or the record type does not exist; raises
        :class:`DnsTempError` / :class:`DnsPermError` otherwise.
        """
        qname = self._qname(name)
        res = self._async_resolver()
        try:
            answer = await res.resolve(qname, rdtype, search=False)
        except dns.exception.DNSException as exc:
            err = self._translate(exc, qname, rdtype)
            if err is None:
                return []
            raise err from exc
        except OSError as exc:
            raise DnsTempError(f"network error looking up {qname} {rdtype}: {exc}") from exc
        return list(answer)

    def query_sync(self, name: str | bytes, rdtype: str) -> list[dns.rdata.Rdata]:
        """Blocking twin of :meth:`query`, for library hooks run in a worker thread."""
        qname = self._qname(name)
        res = self._sync_resolver()
        try:
            answer = res.resolve(qname, rdtype, search=False)
        except dns.exception.DNSException as exc:
            err = self._translate(exc, qname, rdtype)
            if err is None:
                return []
            raise err from exc
        except OSError as exc:
            raise DnsTempError(f"network error looking up {qname} {rdtype}: {exc}") from exc
        return list(answer)

    async def txt(self, name: str | bytes) -> list[bytes]:
        """TXT records of ``name``, each with its character-strings concatenated (RFC 7208 3.3)."""
        return [b"".join(r.strings) for r in await self.query(name, "TXT")]  # type: ignore[attr-defined]

    def txt_sync(self, name: str | bytes) -> list[bytes]:
        """Blocking twin of :meth:`txt`."""
        return [b"".join(r.strings) for r in self.query_sync(name, "TXT")]  # type: ignore[attr-defined]

    # -- adapters for library hooks ---------------------------------------------------------

    def dkim_dnsfunc(self) -> Callable[..., bytes | None]:
        """A dkimpy ``dnsfunc`` (``f(name, timeout=5) -> bytes | None``) bound to this resolver.

        dkimpy expects the *first* TXT record's strings joined, ``None`` when absent, and
        :class:`dkim.DnsTimeoutError` for transient failures. Blocking: call dkimpy from a
        worker thread. (:func:`mailwright.mailauth.dkim.verify_dkim` does not need it: it
        fetches keys asynchronously first; this adapter is for direct dkimpy/ARC use.)
        """
        import dkim as dkimpy

        def dnsfunc(name: str | bytes, timeout: float = 5) -> bytes | None:
            try:
                records = self.txt_sync(name)
            except DnsTempError as exc:
                raise dkimpy.DnsTimeoutError(str(exc)) from exc
            except DnsPermError:
                return None
            return records[0] if records else None

        return dnsfunc

    def spf_lookup(self, name: str, qtype: str, strict: Any = True, timeout: float = 20) -> list[Any]:
        """pyspf ``DNSLookup`` replacement: ``[((name, qtype), value), ...]``.

        Value shapes follow pyspf's own dnspython driver: address strings for A/AAAA,
        ``(preference, exchange)`` for MX, target text for PTR, the tuple of byte strings for
        TXT/SPF. Transient failures raise ``spf.TempError`` so pyspf reports ``temperror``.
        ``timeout`` is ignored: this resolver's own budget applies.
        """
        import spf as pyspf

        try:
            rdatas = self.query_sync(name, qtype)
        except DnsTempError as exc:
            raise pyspf.TempError(f"DNS {exc}") from exc
        except DnsPermError:
            return []
        out: list[Any] = []
        for r in rdatas:
            value: Any
            if qtype in ("A", "AAAA"):
                value = r.address  # type: ignore[attr-defined]
            elif qtype == "MX":
                value = (r.preference, r.exchange)  # type: ignore[attr-defined]
            elif qtype == "PTR":
                value = r.target.to_text(True)  # type: ignore[attr-defined]
            elif qtype in ("TXT", "SPF"):
                value = r.strings  # type: ignore[attr-defined]
            else:
                value = r.to_text()
            out.append(((name, qtype), value))
        return out

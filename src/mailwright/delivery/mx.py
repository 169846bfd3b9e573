"""Where mail for a domain goes: transport map, MX records (RFC 5321 5.1), A/AAAA fallback.

* ``settings.transport_map`` (like Postfix's transport_maps) overrides per recipient domain:
  ``"host"``, ``"host:port"`` (MX lookup of *host*), ``"[host]"`` / ``"[host]:port"`` (no MX
  lookup, connect to host's addresses), ``":port"`` (the domain's own MX, another port).
  Without an entry the domain's MX hosts are used on ``settings.outbound_port`` (25).
* MX hosts are tried in preference order (equal preferences shuffled, as RFC 5321 asks);
  every address of a host (IPv6 first, then IPv4 — Postfix's default order is configurable,
  ours is not) is a separate attempt.
* No MX record: the domain itself is the implicit MX (its A/AAAA). A "null MX" (RFC 7505:
  one MX with exchange ".") or a domain with neither MX nor address is a permanent failure
  (5.1.10 / 5.1.2): retrying will not help. DNS timeouts and SERVFAIL are temporary (4.4.3).
"""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass

from mailwright.mailauth.resolver import DnsPermError, DnsTempError, Resolver
from mailwright.services import Services

__all__ = ["DestinationError", "Hop", "destinations", "resolver_for"]


class DestinationError(Exception):
    """Routing failed; `permanent` tells a bounce (5.x.x) from a retry (4.x.x)."""

    def __init__(self, message: str, *, permanent: bool, status: str) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.status = status


@dataclass(frozen=True)
class Hop:
    host: str  # the MX host name (for logs, DSN Remote-MTA and TLS SNI)
    address: str  # the IP to connect to
    port: int


def resolver_for(svc: Services) -> Resolver:
    """The process's resolver for outbound routing (configured nameservers, or the system's)."""
    res: Resolver | None = getattr(svc, "_mw_outbound_resolver", None)
    if res is None:
        res = Resolver(svc.settings.dns_nameservers or None, port=svc.settings.dns_port, timeout=5.0)
        setattr(svc, "_mw_outbound_resolver", res)  # noqa: B010 - per-Services cache
    return res


def _parse_transport(value: str, domain: str, default_port: int) -> tuple[str, bool, int]:
    """(next hop, look up MX?, port) from a transport-map value."""
    value = value.strip()
    if value.startswith("smtp:"):
        value = value[5:]
    port = default_port
    if value.startswith("["):
        end = value.find("]")
        host = value[1:end] if end > 0 else value[1:]
        rest = value[end + 1 :] if end > 0 else ""
        if rest.startswith(":") and rest[1:].isdigit():
            port = int(rest[1:])
        return host, False, port
    host, sep, p = value.rpartition(":")
    if sep and p.isdigit():
        port = int(p)
    else:
        host = value
    return (host or domain), True, port


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


async def _addresses(res: Resolver, host: str) -> list[str]:
    if _is_ip(host):
        return [host]
    out: list[str] = []
    temp: DnsTempError | None = None
    for rdtype in ("AAAA", "A"):
        try:
            out += [r.address for r in await res.query(host, rdtype)]  # type: ignore[attr-defined]
        except DnsTempError as exc:
            temp = exc
        except DnsPermError:
            return []
    if not out and temp is not None:
        raise temp
    return out


async def destinations(svc: Services, domain: str) -> list[Hop]:
    """Every (host, address, port) to try for `domain`, best first; raises DestinationError."""
    settings = svc.settings
    res = resolver_for(svc)
    entry = settings.transport_map.get(domain) or settings.transport_map.get("*")
    if entry:
        name, lookup_mx, port = _parse_transport(entry, domain, settings.outbound_port)
    else:
        name, lookup_mx, port = domain, True, settings.outbound_port
    try:
        hosts: list[str]
        if lookup_mx and not _is_ip(name):
            mx = await res.query(name, "MX")
            if len(mx) == 1 and str(mx[0].exchange) == ".":  # type: ignore[attr-defined]
                raise DestinationError(f"{domain} does not accept mail (null MX)", permanent=True, status="5.1.10")
            if mx:
                prefs: dict[int, list[str]] = {}
                for r in mx:
                    exch = str(r.exchange).rstrip(".").lower()  # type: ignore[attr-defined]
                    if exch:
                        prefs.setdefault(int(r.preference), []).append(exch)  # type: ignore[attr-defined]
                hosts = []
                for pref in sorted(prefs):
                    group = prefs[pref]
                    random.shuffle(group)
                    hosts += group
            else:
                hosts = [name]
        else:
            hosts = [name]
        hops: list[Hop] = []
        temp: DnsTempError | None = None
        for host in hosts:
            try:
                hops += [Hop(host, a, port) for a in await _addresses(res, host)]
            except DnsTempError as exc:
                temp = exc
    except DnsTempError as exc:
        raise DestinationError(f"DNS lookup for {domain} failed: {exc}", permanent=False, status="4.4.3") from exc
    except DnsPermError as exc:
        raise DestinationError(f"bad destination domain {domain}: {exc}", permanent=True, status="5.1.2") from exc
    if not hops:
        if temp is not None:
            raise DestinationError(f"DNS lookup for {domain} failed: {temp}", permanent=False, status="4.4.3")
        if hosts == [name]:
            raise DestinationError(f"Host or domain name not found: {name}", permanent=True, status="5.1.2")
        raise DestinationError(f"no address for the MX hosts of {domain}", permanent=False, status="4.4.3")
    return hops

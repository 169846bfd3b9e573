"""BIND zone-file fragment for a list of records: what `mailwright dns DOMAIN` prints and
`GET /api/dns/{domain}?format=zone` returns.

TXT values longer than 255 bytes (RSA DKIM keys) are split into several quoted strings on one
line, which DNS joins back (RFC 7208 section 3.3, RFC 6376 section 3.6.2.2).
"""

from __future__ import annotations

from mailwright.dnsrecords.expected import DnsRecord


def _txt(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    parts = [escaped[i:i + 255] for i in range(0, len(escaped), 255)] or [""]
    return " ".join(f'"{p}"' for p in parts)


def render_zone(records: list[DnsRecord], ttl: int = 3600, comment: str | None = None) -> str:
    lines = [f"; {comment}"] if comment else []
    width = max((len(r.name) for r in records), default=0)
    for r in records:
        if r.type == "TXT":
            rdata = _txt(r.content)
        elif r.priority is not None:
            rdata = f"{r.priority} {r.content}"
        else:
            rdata = r.content
        lines.append(f"{r.name.ljust(width)} {ttl} IN {r.type.ljust(5)} {rdata}")
    return "\n".join(lines) + "\n"

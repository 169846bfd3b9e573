"""Sender Rewriting Scheme (SRS), the Shevek scheme as libsrs2/postsrsd implement it.

When we forward a message (an external member of a list, a forwarder) the envelope sender is
rewritten to an address at *our* domain, so the next hop's SPF check sees our IP and our
domain, and bounces come back to us; we reverse the address and pass the bounce on:

    user@origin.example  --forward via fwd.test-->  SRS0=HHHH=TT=origin.example=user@fwd.test
    SRS0=...@hop1.test   --forward via hop2.test-->  SRS1=HHHH=hop1.test==HHHH=TT=origin.example=user@hop2.test

* ``TT`` is the day number modulo 1024 in base32 (two characters); a reversed address older
  than :data:`MAX_AGE_DAYS` is refused (postsrsd's default), so harvested SRS addresses stop
  working as open bounce relays.
* ``HHHH`` is the first four base64 characters of HMAC-SHA1(secret, ...). Our MX lowercases
  local parts (directory.names), so the hash is computed over lowercased input and compared
  case-insensitively, as libsrs2 does when it meets a case-mangled address.
* The null sender ``<>`` (a bounce) is never rewritten: it must stay null.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from pathlib import Path
from typing import TYPE_CHECKING

from mailwright.storage.keyfile import load_or_create_key

if TYPE_CHECKING:
    from mailwright.services import Services

__all__ = ["MAX_AGE_DAYS", "srs_forward", "srs_reverse", "srs_secret", "is_srs"]

MAX_AGE_DAYS = 21
_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_HASH_LEN = 4


def _hash(secret: bytes, *parts: str) -> str:
    mac = hmac.new(secret, "".join(parts).lower().encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(mac).decode("ascii")[:_HASH_LEN]


def _today() -> int:
    return int(time.time() // 86400)


def _timestamp(day: int | None = None) -> str:
    t = (day if day is not None else _today()) % 1024
    return _B32[t >> 5] + _B32[t & 31]


def _timestamp_ok(tt: str) -> bool:
    tt = tt.upper()
    if len(tt) != 2 or any(c not in _B32 for c in tt):
        return False
    then = (_B32.index(tt[0]) << 5) | _B32.index(tt[1])
    age = (_today() - then) % 1024
    return age <= MAX_AGE_DAYS


def is_srs(address: str) -> bool:
    return address[:5].upper() in ("SRS0=", "SRS0+", "SRS0-", "SRS1=", "SRS1+", "SRS1-")


def srs_forward(sender: str, forwarding_domain: str, secret: bytes) -> str:
    """The envelope sender to use when `forwarding_domain` forwards mail from `sender`."""
    if not sender or "@" not in sender:
        return sender  # <> stays <>; a bare local part has nothing to protect
    local, _, domain = sender.rpartition("@")
    fwd = forwarding_domain.lower()
    if domain.lower() == fwd:
        return sender  # our own sender: SPF already passes for us
    head = local[:5].upper()
    if head in ("SRS1=", "SRS1+", "SRS1-"):
        # Already SRS1: keep the first hop, re-hash for this hop.
        parts = local[5:].split("=", 2)
        if len(parts) == 3 and parts[1] and parts[2].lstrip("="):
            first_hop, rest = parts[1], parts[2].lstrip("=")
            return f"SRS1={_hash(secret, first_hop, rest)}={first_hop}=={rest}@{fwd}"
    if head in ("SRS0=", "SRS0+", "SRS0-"):
        rest = local[5:]
        return f"SRS1={_hash(secret, domain, rest)}={domain}=={rest}@{fwd}"
    tt = _timestamp()
    return f"SRS0={_hash(secret, tt, domain, local)}={tt}={domain}={local}@{fwd}"


def srs_reverse(address: str, secret: bytes) -> str | None:
    """The address a bounce to an SRS address of ours must go to, or None if it is not a valid,
    unexpired SRS address made with `secret`."""
    if "@" not in address:
        return None
    local = address.rpartition("@")[0]
    head = local[:5].upper()
    if head in ("SRS0=", "SRS0+", "SRS0-"):
        parts = local[5:].split("=", 3)
        if len(parts) != 4:
            return None
        h, tt, domain, orig_local = parts
        if not domain or not orig_local or not _timestamp_ok(tt):
            return None
        if not hmac.compare_digest(h.lower(), _hash(secret, tt, domain, orig_local).lower()):
            return None
        return f"{orig_local}@{domain}"
    if head in ("SRS1=", "SRS1+", "SRS1-"):
        parts = local[5:].split("=", 2)
        if len(parts) != 3:
            return None
        h, first_hop, rest = parts
        rest = rest.lstrip("=")
        if not first_hop or not rest:
            return None
        if not hmac.compare_digest(h.lower(), _hash(secret, first_hop, rest).lower()):
            return None
        return f"SRS0={rest}@{first_hop}"
    return None


def srs_secret(svc: Services) -> bytes:
    """`settings.srs_secret` if set, else a random key made once in `<data_dir>/srs.key`.

    Every node of a cluster must use the same secret (set it explicitly, or share the data
    dir), otherwise a bounce arriving at another node cannot be reversed.
    """
    configured = svc.settings.srs_secret
    if configured:
        return configured.encode("utf-8")
    cached: bytes | None = getattr(svc, "_mw_srs_secret", None)
    if cached is not None:
        return cached
    path = Path(svc.settings.data_dir) / "srs.key"
    key = load_or_create_key(path)
    setattr(svc, "_mw_srs_secret", key)  # noqa: B010 - a per-Services cache, not a field
    return key


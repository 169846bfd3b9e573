"""DKIM keys, signing and verification (RFC 6376, RFC 8463 ed25519) on top of dkimpy.

Key material formats (what :class:`DkimKey.private_key` holds, and what
:func:`generate_dkim_key` returns for storage):

* ``rsa-sha256``: the private key as PEM (PKCS#1 ``BEGIN RSA PRIVATE KEY``; PKCS#8 PEM is
  accepted too). The DNS value carries the DER SubjectPublicKeyInfo in base64.
* ``ed25519-sha256``: the 32-byte private *seed*, base64-encoded (44 ASCII bytes), which is
  exactly what dkimpy feeds to ``nacl.signing.SigningKey(..., encoder=Base64Encoder)``. A
  PKCS#8 PEM ed25519 key (as ``openssl genpkey -algorithm ed25519`` writes) is accepted as
  well and converted. The DNS value carries the raw 32-byte public key in base64 (RFC 8463).

Verification does its DNS asynchronously, before handing the message to dkimpy: the keys of
all signatures are fetched concurrently through the shared :class:`~.resolver.Resolver`, and
then dkimpy (CPU-bound canonicalization and crypto) runs in a worker thread with a
``dnsfunc`` that only answers from those prefetched records. That keeps the event loop free,
and lets a DNS *timeout* be reported as ``temperror`` (dkimpy itself would turn it into a
plain "signature invalid").
"""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass
from typing import Literal

import dkim as dkimpy
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from dkim.util import InvalidTagValueList, parse_tag_value

from .resolver import DnsPermError, DnsTempError, Resolver

__all__ = [
    "DEFAULT_SIGNED_HEADERS",
    "DkimAlgorithm",
    "DkimKey",
    "DkimResult",
    "dkim_sign",
    "generate_dkim_key",
    "verify_dkim",
]

DkimAlgorithm = Literal["ed25519-sha256", "rsa-sha256"]

#: Header fields signed by default, in this order. Only those present in the message are
#: signed (once per occurrence); From is additionally *oversigned* (listed one extra time) so
#: that a second From field cannot be added without breaking the signature.
DEFAULT_SIGNED_HEADERS: tuple[bytes, ...] = (
    b"From",
    b"To",
    b"Cc",
    b"Subject",
    b"Date",
    b"Message-ID",
    b"In-Reply-To",
    b"References",
    b"MIME-Version",
    b"Content-Type",
    b"Reply-To",
)

#: Signatures beyond this many are not evaluated (cheap DoS guard: each costs a DNS lookup).
MAX_SIGNATURES = 10


@dataclass
class DkimKey:
    """One signing key of a domain; see the module docstring for ``private_key`` formats."""

    domain: str
    selector: str
    algorithm: DkimAlgorithm
    private_key: bytes


@dataclass(frozen=True)
class DkimResult:
    """Outcome for one DKIM-Signature header, in message order (topmost first)."""

    result: str  # pass | fail | neutral | temperror | permerror
    domain: str  # d=
    selector: str  # s=
    algorithm: str = ""  # a=
    reason: str = ""
    signature_b: str = ""  # first characters of b=, to tell signatures apart (RFC 6008)


def _normalize_algorithm(algorithm: str) -> DkimAlgorithm:
    alg = algorithm.strip().lower()
    if alg in ("ed25519", "ed25519-sha256"):
        return "ed25519-sha256"
    if alg in ("rsa", "rsa-sha256"):
        return "rsa-sha256"
    raise ValueError(f"unsupported DKIM algorithm {algorithm!r} (use ed25519-sha256 or rsa-sha256)")


def generate_dkim_key(algorithm: str = "ed25519-sha256", *, rsa_bits: int = 2048) -> tuple[bytes, str]:
    """Create a new key pair: ``(private key material to store, DNS TXT value)``.

    The TXT value is the complete record text, e.g. ``"v=DKIM1; k=ed25519; p=..."``, to be
    published at ``<selector>._domainkey.<domain>``. RSA values (~400 characters for 2048
    bits) exceed 255 bytes and must be published as several character-strings; DNS tooling
    that writes zone files has to split them (see tests/support/dnsserver.py).
    """
    alg = _normalize_algorithm(algorithm)
    if alg == "ed25519-sha256":
        priv = ed25519.Ed25519PrivateKey.generate()
        seed = priv.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        pub = priv.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return base64.b64encode(seed), f"v=DKIM1; k=ed25519; p={base64.b64encode(pub).decode()}"
    if rsa_bits < 1024:
        raise ValueError("RSA DKIM keys shorter than 1024 bits are rejected by verifiers (RFC 8301)")
    rsa_priv = rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
    pem = rsa_priv.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    der = rsa_priv.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem, f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"


def _dkimpy_private_key(key: DkimKey) -> bytes:
    """Key bytes in the shape dkimpy's signer wants for ``key.algorithm``."""
    material = key.private_key.strip()
    if key.algorithm == "ed25519-sha256" and material.startswith(b"-----BEGIN"):
        loaded = serialization.load_pem_private_key(material, password=None)
        if not isinstance(loaded, ed25519.Ed25519PrivateKey):
            raise ValueError(f"DKIM key {key.selector}._domainkey.{key.domain} is not an ed25519 key")
        seed = loaded.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        return base64.b64encode(seed)
    return material


def _header_names(message: bytes) -> list[bytes]:
    """Lower-cased names of the header fields, in order (dkimpy's own parser)."""
    headers, _body = dkimpy.rfc822_parse(message)
    return [name.lower() for name, _value in headers]


def _include_list(present: list[bytes], wanted: list[bytes]) -> list[bytes]:
    include: list[bytes] = []
    seen: set[bytes] = set()
    for name in wanted:
        lname = name.strip().lower()
        if not lname or lname in seen:
            continue
        seen.add(lname)
        include.extend([lname] * present.count(lname))
    if b"from" not in include:
        raise ValueError("cannot DKIM-sign a message without a From header field")
    include.append(b"from")  # oversign From
    return include


def dkim_sign(message: bytes, keys: list[DkimKey], headers: list[bytes] | None = None) -> bytes:
    """Return ``message`` with one DKIM-Signature per key prepended (first key on top).

    relaxed/relaxed canonicalization; ``headers`` overrides :data:`DEFAULT_SIGNED_HEADERS`.
    Each signature covers the original message only (DKIM-Signature fields are never
    signed), so the order of the keys does not matter to verifiers. The line ending of the
    message (CRLF or LF) is kept for the added fields. Raises ValueError for unusable keys or
    a message without From: signing problems are configuration bugs to surface, not hide.
    """
    if not keys:
        return message
    linesep = b"\r\n" if b"\r\n" in message else b"\n"
    include = _include_list(_header_names(message), list(headers or DEFAULT_SIGNED_HEADERS))
    signatures: list[bytes] = []
    for key in keys:
        alg = _normalize_algorithm(key.algorithm)
        signer = dkimpy.DKIM(message, signature_algorithm=alg.encode(), linesep=linesep)
        try:
            sig = signer.sign(
                key.selector.encode("ascii"),
                key.domain.encode("idna"),
                _dkimpy_private_key(DkimKey(key.domain, key.selector, alg, key.private_key)),
                canonicalize=(b"relaxed", b"relaxed"),
                include_headers=include,
            )
        except dkimpy.DKIMException as exc:
            raise ValueError(f"DKIM signing with {key.selector}._domainkey.{key.domain} failed: {exc}") from exc
        if not sig.endswith(linesep):
            sig += linesep
        signatures.append(sig)
    return b"".join(signatures) + message


# -- verification ------------------------------------------------------------------------------


def _key_name(fields: dict[bytes, bytes]) -> bytes:
    # Same name dkimpy builds in DomainSigner.verify_sig, so the prefetched answer matches.
    return fields[b"s"] + b"._domainkey." + fields[b"d"] + b"."


def _pick_key_record(records: list[bytes]) -> bytes | None:
    """The key record to use when a selector has several TXT records: the first with p=."""
    for rec in records:
        try:
            if b"p" in parse_tag_value(rec):
                return rec
        except InvalidTagValueList:
            continue
    return records[0] if records else None


def _verify_prefetched(
    message: bytes,
    sigs: list[tuple[dict[bytes, bytes] | None, str]],
    keys: dict[bytes, bytes | None | DnsTempError | DnsPermError],
    minkey: int,
) -> list[DkimResult]:
    """CPU-bound part of verification (runs in a worker thread)."""
    results: list[DkimResult] = []
    verifier = dkimpy.DKIM(message, minkey=minkey)

    def dnsfunc(name: bytes | str, timeout: float = 5) -> bytes | None:
        key = keys.get(name if isinstance(name, bytes) else name.encode())
        return key if isinstance(key, bytes) else None

    for idx, (fields, parse_error) in enumerate(sigs):
        if fields is None:
            results.append(DkimResult("permerror", "", "", "", parse_error))
            continue
        d = fields.get(b"d", b"").decode("ascii", "replace").lower()
        s = fields.get(b"s", b"").decode("ascii", "replace")
        a = fields.get(b"a", b"").decode("ascii", "replace").lower()
        b_tag = b"".join(fields.get(b"b", b"").split())[:8].decode("ascii", "replace")

        def res(result: str, reason: str = "", d: str = d, s: str = s, a: str = a, b: str = b_tag) -> DkimResult:
            return DkimResult(result, d, s, a, reason, b)

        if not d or not s:
            results.append(res("permerror", "signature lacks d= or s="))
            continue
        key = keys.get(_key_name(fields))
        if isinstance(key, DnsTempError):
            results.append(res("temperror", f"key lookup failed: {key}"))
            continue
        if key is None or isinstance(key, DnsPermError):
            results.append(res("permerror", "no key for signature"))
            continue
        try:
            dkimpy.evaluate_pk(_key_name(fields), key)
        except (dkimpy.DKIMException, ValueError, TypeError) as exc:  # also binascii.Error
            results.append(res("permerror", f"bad key record: {exc}"))
            continue
        try:
            ok = verifier.verify(idx=idx, dnsfunc=dnsfunc)
        except dkimpy.ValidationError as exc:
            text = str(exc)
            if "body hash mismatch" in text:
                results.append(res("fail", "body hash did not verify"))
            else:
                results.append(res("permerror", text))
            continue
        except dkimpy.DKIMException as exc:
            results.append(res("permerror", str(exc)))
            continue
        except Exception as exc:  # dkimpy raises raw KeyError/ValueError on odd input
            results.append(res("permerror", f"{type(exc).__name__}: {exc}"))
            continue
        results.append(res("pass") if ok else res("fail", "signature did not verify"))
    return results


async def verify_dkim(message: bytes, resolver: Resolver, *, minkey: int = 1024) -> list[DkimResult]:
    """Verify every DKIM-Signature of ``message`` (up to :data:`MAX_SIGNATURES`).

    Returns one :class:`DkimResult` per signature, topmost first; ``[]`` means unsigned
    (report ``dkim=none``). Never raises for bad signatures, bad keys or DNS trouble.
    """
    try:
        headers, _body = dkimpy.rfc822_parse(message)
    except Exception as exc:  # malformed header block
        return [DkimResult("permerror", "", "", "", f"unparsable message: {exc}")]
    raw_sigs = [value for name, value in headers if name.lower() == b"dkim-signature"][:MAX_SIGNATURES]
    if not raw_sigs:
        return []
    sigs: list[tuple[dict[bytes, bytes] | None, str]] = []
    for raw in raw_sigs:
        try:
            sigs.append((parse_tag_value(raw), ""))
        except InvalidTagValueList as exc:
            sigs.append((None, f"unparsable DKIM-Signature: {exc}"))

    names = sorted({_key_name(f) for f, _ in sigs if f is not None and f.get(b"d") and f.get(b"s")})

    async def fetch(name: bytes) -> bytes | None | DnsTempError | DnsPermError:
        try:
            return _pick_key_record(await resolver.txt(name))
        except (DnsTempError, DnsPermError) as exc:
            return exc

    fetched = await asyncio.gather(*(fetch(n) for n in names))
    keys = dict(zip(names, fetched, strict=True))
    return await asyncio.to_thread(_verify_prefetched, message, sigs, keys, minkey)

"""DMARC (RFC 7489) policy discovery, identifier alignment and disposition.

Why our own code rather than a library: the evaluation is a few dozen lines once SPF and
DKIM results are known, and doing it here keeps every DNS lookup on the shared
:class:`~.resolver.Resolver` (checkdmarc brings its own resolver and is report-oriented).

Organizational domain (RFC 7489 section 3.2): if the Public Suffix List is installed (Debian
package ``publicsuffix``: ``/usr/share/publicsuffix/public_suffix_list.dat``) it is used,
with its wildcard and exception rules; otherwise a heuristic applies: the last two labels,
or the last three when the name ends in a two-letter country code preceded by a common
second-level label such as ``co``/``com``/``org``/``ac``/``gov`` (``example.co.uk``). The
heuristic errs only on exotic suffixes, where it makes relaxed alignment stricter or looser
by one label.

Disposition: ``action`` is ``reject``/``quarantine`` only when DMARC *fails* and the
applicable policy (``p``, or ``sp`` for a subdomain whose policy came from the organizational
domain) says so, after ``pct`` sampling (a message outside the sample gets the next milder
policy, RFC 7489 section 6.6.4). ``temperror``/``permerror``/``none`` always give ``accept``;
an SMTP layer that prefers to defer on ``temperror`` can look at :attr:`DmarcResult.result`.
"""

from __future__ import annotations

import functools
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from email.utils import getaddresses
from pathlib import Path
from typing import Literal

from .resolver import DnsPermError, DnsTempError, Resolver

__all__ = [
    "DmarcRecord",
    "DmarcResult",
    "check_dmarc",
    "discover_policy",
    "evaluate_dmarc",
    "from_domains",
    "is_aligned",
    "organizational_domain",
    "parse_dmarc_record",
]

Action = Literal["accept", "quarantine", "reject"]
_POLICIES = ("none", "quarantine", "reject")
_MILDER = {"reject": "quarantine", "quarantine": "none", "none": "none"}

PSL_PATHS = (
    Path("/usr/share/publicsuffix/public_suffix_list.dat"),
    Path("/usr/share/publicsuffix/effective_tld_names.dat"),
)
_CC_SECOND_LEVEL = frozenset("ac co com edu gob go gov ltd mil ne net nic or org plc sch".split())


# -- organizational domain ---------------------------------------------------------------------


def _ascii_rule(rule: str) -> str:
    """A PSL rule with internationalized labels in punycode ("" if it cannot be encoded)."""
    prefix = "!" if rule.startswith("!") else ""
    labels = rule.removeprefix("!").lower().split(".")
    try:
        return prefix + ".".join(lbl if lbl.isascii() else lbl.encode("idna").decode("ascii") for lbl in labels)
    except UnicodeError:
        return ""


@dataclass(frozen=True)
class _PublicSuffixList:
    rules: frozenset[str]
    wildcards: frozenset[str]  # "*.ck" stored as "ck"
    exceptions: frozenset[str]  # "!www.ck" stored as "www.ck"

    @classmethod
    def load(cls, path: Path) -> _PublicSuffixList:
        rules: set[str] = set()
        wildcards: set[str] = set()
        exceptions: set[str] = set()
        for line in path.read_text(encoding="utf-8").splitlines():
            rule = line.strip().split()[0] if line.strip() else ""
            if not rule or rule.startswith("//"):
                continue
            rule = _ascii_rule(rule)
            if not rule:
                continue
            if rule.startswith("!"):
                exceptions.add(rule[1:])
            elif rule.startswith("*."):
                wildcards.add(rule[2:])
            else:
                rules.add(rule)
        return cls(frozenset(rules), frozenset(wildcards), frozenset(exceptions))

    def public_suffix_len(self, labels: list[str]) -> int:
        """Number of trailing labels forming the public suffix (PSL algorithm, default "*")."""
        best = 1
        for i in range(len(labels)):
            cand = ".".join(labels[i:])
            n = len(labels) - i
            if cand in self.exceptions:
                return n - 1
            if cand in self.rules:
                best = max(best, n)
            parent = ".".join(labels[i + 1 :])
            if i + 1 < len(labels) and parent in self.wildcards:
                best = max(best, n)
        return best


@functools.cache
def _psl() -> _PublicSuffixList | None:
    for path in PSL_PATHS:
        try:
            if path.is_file():
                return _PublicSuffixList.load(path)
        except (OSError, UnicodeError):
            continue
    return None


def organizational_domain(domain: str) -> str:
    """The registrable ("organizational") domain of ``domain``, lower-case, no trailing dot."""
    name = domain.strip().rstrip(".").lower()
    labels = [lbl for lbl in name.split(".") if lbl]
    if len(labels) <= 1:
        return name
    psl = _psl()
    if psl is not None:
        suffix_len = psl.public_suffix_len(labels)
    elif len(labels) >= 3 and len(labels[-1]) == 2 and labels[-2] in _CC_SECOND_LEVEL:
        suffix_len = 2
    else:
        suffix_len = 1
    if suffix_len >= len(labels):
        return name  # the name is itself a public suffix
    return ".".join(labels[-(suffix_len + 1) :])


def is_aligned(identifier: str, from_domain: str, mode: str) -> bool:
    """RFC 7489 3.1: strict = identical names; relaxed = same organizational domain."""
    a = identifier.strip().rstrip(".").lower()
    b = from_domain.strip().rstrip(".").lower()
    if not a or not b:
        return False
    if mode == "s":
        return a == b
    return organizational_domain(a) == organizational_domain(b)


# -- records -------------------------------------------------------------------------------


@dataclass(frozen=True)
class DmarcRecord:
    """The tags of a DMARC record that matter for a verdict (reporting tags are ignored)."""

    p: str
    sp: str | None = None
    adkim: str = "r"
    aspf: str = "r"
    pct: int = 100
    raw: str = ""


class DmarcRecordError(ValueError):
    """A DMARC record that cannot be used (RFC 7489 6.6.3): reported as permerror."""


def parse_dmarc_record(text: str) -> DmarcRecord:
    """Parse ``v=DMARC1; p=...`` text. Unknown tags are ignored (RFC 7489 6.3).

    A missing/invalid ``p`` is treated as ``p=none`` when ``rua`` is present, as RFC 7489
    6.6.3 asks; otherwise the record is unusable and DmarcRecordError is raised.
    """
    tags: dict[str, str] = {}
    parts = [p.strip() for p in text.split(";")]
    for part in parts:
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep:
            raise DmarcRecordError(f"malformed tag {part!r}")
        tags.setdefault(key.strip().lower(), value.strip())
    if not parts or parts[0].replace(" ", "") != "v=DMARC1":
        raise DmarcRecordError("record does not start with v=DMARC1")
    p = tags.get("p", "").lower()
    if p not in _POLICIES:
        if tags.get("rua"):
            p = "none"
        else:
            raise DmarcRecordError(f"missing or invalid p= ({tags.get('p')!r})")
    sp: str | None = tags.get("sp", "").lower() or None
    if sp is not None and sp not in _POLICIES:
        if tags.get("rua"):
            sp = None
        else:
            raise DmarcRecordError(f"invalid sp= ({sp!r})")
    adkim = tags.get("adkim", "r").lower()
    aspf = tags.get("aspf", "r").lower()
    if adkim not in ("r", "s") or aspf not in ("r", "s"):
        raise DmarcRecordError("adkim/aspf must be r or s")
    try:
        pct = int(tags.get("pct", "100"))
    except ValueError as exc:
        raise DmarcRecordError(f"invalid pct= ({tags.get('pct')!r})") from exc
    pct = min(100, max(0, pct))
    return DmarcRecord(p=p, sp=sp, adkim=adkim, aspf=aspf, pct=pct, raw=text)


def from_domains(message: bytes) -> list[str]:
    """Domains of the RFC5322.From address(es), lower-case, in order, de-duplicated.

    Only the header block is looked at. Header folding is undone before parsing.
    """
    end = len(message)
    for sep in (b"\r\n\r\n", b"\n\n"):
        i = message.find(sep)
        if i != -1:
            end = min(end, i)
    block = message[:end].decode("utf-8", "replace")
    block = re.sub(r"\r?\n[ \t]+", " ", block)
    values = [line.split(":", 1)[1] for line in block.splitlines() if line.lower().startswith("from:")]
    domains: list[str] = []
    for _name, addr in getaddresses(values):
        dom = addr.rpartition("@")[2].strip().rstrip(".").lower() if "@" in addr else ""
        if dom and dom not in domains:
            domains.append(dom)
    return domains


async def _records_at(name: str, resolver: Resolver) -> list[str]:
    txts = await resolver.txt(f"_dmarc.{name}")
    out = []
    for t in txts:
        s = t.decode("utf-8", "replace")
        if s.replace(" ", "").startswith("v=DMARC1"):
            out.append(s)
    return out


async def discover_policy(from_domain: str, resolver: Resolver) -> tuple[DmarcRecord | None, str]:
    """RFC 7489 6.6.3 policy discovery: the From domain first, then its organizational domain.

    Returns ``(record, domain it was found at)``, or ``(None, "")`` when there is none.
    Raises DnsTempError (caller reports temperror) or DmarcRecordError (permerror).
    """
    candidates = [from_domain]
    org = organizational_domain(from_domain)
    if org != from_domain:
        candidates.append(org)
    for name in candidates:
        try:
            records = await _records_at(name, resolver)
        except DnsPermError:
            records = []
        if len(records) > 1:
            raise DmarcRecordError(f"more than one DMARC record at _dmarc.{name}")
        if records:
            return parse_dmarc_record(records[0]), name
    return None, ""


@dataclass(frozen=True)
class DmarcResult:
    result: str  # pass | fail | none | temperror | permerror
    domain: str  # RFC5322.From domain ("" if none could be found)
    policy: str | None  # applicable published policy (p or sp), None without a record
    action: Action
    record_domain: str = ""  # where the record was found
    spf_aligned: bool = False
    dkim_aligned: bool = False
    reason: str = ""


def evaluate_dmarc(
    *,
    from_domain: str,
    record: DmarcRecord | None,
    record_domain: str,
    spf_result: str,
    spf_domain: str,
    dkim_results: Sequence[tuple[str, str]],
    sample: float,
) -> DmarcResult:
    """Pure DMARC verdict from already-known inputs (separate from DNS so it can be tested).

    ``dkim_results`` are ``(result, d=)`` pairs; ``sample`` is a number in [0, 1) drawn per
    message and compared with ``pct``.
    """
    if record is None:
        return DmarcResult("none", from_domain, None, "accept", reason="no DMARC record")
    policy = record.p
    if record_domain != from_domain and record.sp is not None:
        policy = record.sp
    spf_ok = spf_result == "pass" and is_aligned(spf_domain, from_domain, record.aspf)
    dkim_ok = any(res == "pass" and is_aligned(d, from_domain, record.adkim) for res, d in dkim_results)
    if spf_ok or dkim_ok:
        return DmarcResult("pass", from_domain, policy, "accept", record_domain, spf_ok, dkim_ok)
    applied = policy
    if sample * 100 >= record.pct:
        applied = _MILDER[policy]
    action: Action = "reject" if applied == "reject" else "quarantine" if applied == "quarantine" else "accept"
    return DmarcResult(
        "fail", from_domain, policy, action, record_domain, False, False, reason=f"disposition {applied}"
    )


async def check_dmarc(
    message: bytes,
    *,
    spf_result: str,
    spf_domain: str,
    dkim_results: Sequence[tuple[str, str]],
    resolver: Resolver,
    rng: random.Random | None = None,
) -> DmarcResult:
    """Full DMARC check of ``message`` given its SPF and DKIM outcomes. Never raises.

    A message with zero From domains, or several different ones, cannot be evaluated
    (RFC 7489 6.6.1) and gets ``permerror`` (action accept; the SMTP layer may refuse such
    messages outright).
    """
    domains = from_domains(message)
    if len(domains) != 1:
        why = "no RFC5322.From domain" if not domains else "multiple RFC5322.From domains"
        return DmarcResult("permerror", domains[0] if domains else "", None, "accept", reason=why)
    from_domain = domains[0]
    try:
        record, record_domain = await discover_policy(from_domain, resolver)
    except DnsTempError as exc:
        return DmarcResult("temperror", from_domain, None, "accept", reason=str(exc))
    except DmarcRecordError as exc:
        return DmarcResult("permerror", from_domain, None, "accept", reason=str(exc))
    sample = (rng or random).random()
    return evaluate_dmarc(
        from_domain=from_domain,
        record=record,
        record_domain=record_domain,
        spf_result=spf_result,
        spf_domain=spf_domain,
        dkim_results=dkim_results,
        sample=sample,
    )

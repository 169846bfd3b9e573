"""Sequence sets (RFC 9051 §9 sequence-set) against a session's sorted UID array.

A parsed set is a list of (lo, hi) with None for "*". Message numbers out of range are an
error (BAD, as Dovecot answers "Invalid messageset"); UID sets never are ("*" is the highest
UID, and a range beyond it simply matches less).
"""

from __future__ import annotations

import re
from array import array
from bisect import bisect_left, bisect_right

from mailwright.imap.parser import ParseError

Ranges = list[tuple[int | None, int | None]]
_SET_RE = re.compile(r"^(?:(?:\d+|\*)(?::(?:\d+|\*))?)(?:,(?:\d+|\*)(?::(?:\d+|\*))?)*$")
MAX32 = 0xFFFFFFFF


def parse(text: str) -> Ranges:
    if len(text) > 100_000 or not _SET_RE.match(text):
        raise ParseError("invalid sequence set")
    out: Ranges = []
    for part in text.split(","):
        a, _, b = part.partition(":")
        lo = None if a == "*" else int(a)
        hi = lo if not b else (None if b == "*" else int(b))
        for v in (lo, hi):
            if v is not None and (v == 0 or v > MAX32):
                raise ParseError("invalid sequence number")
        out.append((lo, hi))
    return out


def is_set(text: str) -> bool:
    return bool(_SET_RE.match(text)) and "0" not in [p for s in text.split(",") for p in s.split(":")]


def seqs(ranges: Ranges, count: int) -> list[int]:
    """Message numbers (1-based, sorted, unique). Raises ParseError if any is out of range."""
    out: set[int] = set()
    for lo, hi in ranges:
        a = count if lo is None else lo
        b = count if hi is None else hi
        if a > b:
            a, b = b, a
        if a < 1 or b > count:
            raise ParseError("Invalid messageset")
        out.update(range(a, b + 1))
    return sorted(out)


def uid_indexes(ranges: Ranges, uids: array[int]) -> list[int]:
    """0-based indexes into `uids` (sorted) of the UIDs in the set."""
    if not uids:
        return []
    top = uids[-1]
    out: set[int] = set()
    for lo, hi in ranges:
        a = top if lo is None else lo
        b = top if hi is None else hi
        if a > b:
            a, b = b, a
        out.update(range(bisect_left(uids, a), bisect_right(uids, b)))
    return sorted(out)


def uid_values(ranges: Ranges, top: int) -> list[tuple[int, int]]:
    """The set as plain (lo, hi) UID ranges, "*" resolved to `top`."""
    res = []
    for lo, hi in ranges:
        a = top if lo is None else lo
        b = top if hi is None else hi
        res.append((min(a, b), max(a, b)))
    return res


def contains(ranges: list[tuple[int, int]], v: int) -> bool:
    return any(a <= v <= b for a, b in ranges)


def compress(values: list[int]) -> str:
    """Sorted numbers as a compact set: 1:3,5,7:8."""
    if not values:
        return ""
    vals = sorted(set(values))
    parts = []
    start = prev = vals[0]
    for v in vals[1:]:
        if v == prev + 1:
            prev = v
            continue
        parts.append(f"{start}:{prev}" if start != prev else str(start))
        start = prev = v
    parts.append(f"{start}:{prev}" if start != prev else str(start))
    return ",".join(parts)

"""A small per-caller API rate limiter, shared by every dialect.

Token bucket per key (an API key id, or "ip:<address>" for callers without a valid key):
capacity = the per-minute rate, refilled continuously, so a client may burst up to one minute's
allowance and then proceeds at the steady rate. `hit` answers how long to wait (the value for
`Retry-After`, whole seconds, at least 1) or None when the request may proceed. Each dialect
renders the refusal in its own shape (429 + Retry-After).

State is per process (like nginx's limit_req without a shared zone): with `--workers N` a
client may get up to N times the rate. The table is bounded; idle buckets (full again) are
dropped first when it fills up.
"""

from __future__ import annotations

import math
import time

from fastapi import Request

from mailwright.api.auth import services

_MAX_KEYS = 50_000


class RateLimiter:
    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self.rate = per_minute / 60.0
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last refill time)

    def hit(self, key: str, now: float | None = None) -> float | None:
        """Take one token for `key`; None if allowed, else seconds until one is available."""
        if self.per_minute <= 0:
            return None
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.get(key, (float(self.per_minute), now))
        tokens = min(float(self.per_minute), tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return max(1.0, math.ceil((1.0 - tokens) / self.rate))
        if len(self._buckets) >= _MAX_KEYS and key not in self._buckets:
            self._prune(now)
        self._buckets[key] = (tokens - 1.0, now)
        return None

    def _prune(self, now: float) -> None:
        full = [k for k, (t, last) in self._buckets.items() if t + (now - last) * self.rate >= self.per_minute]
        for k in full:
            del self._buckets[k]
        if len(self._buckets) >= _MAX_KEYS:
            self._buckets.clear()


def limiter(request: Request) -> RateLimiter:
    """The app's limiter for the API rate (`api_rate_per_minute`), created on first use."""
    state = request.app.state
    lim: RateLimiter | None = getattr(state, "api_rate_limiter", None)
    if lim is None:
        lim = RateLimiter(services(request).settings.api_rate_per_minute)
        state.api_rate_limiter = lim
    return lim


def check(request: Request, key: str) -> float | None:
    """Count this request against `key`; seconds to wait when over the limit, else None."""
    return limiter(request).hit(key)

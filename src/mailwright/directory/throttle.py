"""Failed-login throttling, per client IP and per account name (in-process).

A burst of failures (default 10 within 60 s) locks that IP or that account out for a while;
the protocol answers "try later" (SMTP 454 4.7.0, IMAP NO [UNAVAILABLE], POP3 -ERR [IN-USE]...)
without even checking the password, so guessing costs the attacker time, not us CPU. Counters
are per process: with N workers an attacker gets at most N times the budget.
"""

from __future__ import annotations

import time
from collections import deque


class LoginThrottle:
    def __init__(self, max_failures: int = 10, window: float = 60.0, lockout: float = 60.0) -> None:
        self.max_failures = max_failures
        self.window = window
        self.lockout = lockout
        self._failures: dict[str, deque[float]] = {}
        self._locked: dict[str, float] = {}

    def _keys(self, ip: str | None, account: str | None) -> list[str]:
        keys = []
        if ip:
            keys.append("ip:" + ip)
        if account:
            keys.append("acct:" + account.lower())
        return keys

    def blocked(self, ip: str | None, account: str | None = None) -> float:
        """Seconds until this IP/account may try again (0 = allowed)."""
        now = time.monotonic()
        worst = 0.0
        for k in self._keys(ip, account):
            until = self._locked.get(k)
            if until is not None:
                if until > now:
                    worst = max(worst, until - now)
                else:
                    del self._locked[k]
        return worst

    def failure(self, ip: str | None, account: str | None = None) -> None:
        now = time.monotonic()
        for k in self._keys(ip, account):
            q = self._failures.setdefault(k, deque())
            q.append(now)
            while q and q[0] < now - self.window:
                q.popleft()
            if len(q) >= self.max_failures:
                self._locked[k] = now + self.lockout
                q.clear()
        if len(self._failures) > 100_000:
            self._failures.clear()

    def success(self, ip: str | None, account: str | None = None) -> None:
        for k in self._keys(ip, account):
            self._failures.pop(k, None)

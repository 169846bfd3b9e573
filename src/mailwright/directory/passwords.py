"""Argon2id password hashing, with a short-lived verification cache.

Mail clients log in again and again (every poll, every IDLE reconnect); Dovecot keeps an auth
cache for the same reason. A successful verification is remembered for a few minutes keyed by
(stored hash, keyed digest of the password), so a changed password can never hit the cache:
the stored hash it was keyed on is gone.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_CACHE_TTL = 300.0
_CACHE_MAX = 100_000
_cache_key = secrets.token_bytes(32)
_cache: dict[bytes, float] = {}
_hasher = PasswordHasher()


def configure(time_cost: int, memory_kib: int, parallelism: int) -> None:
    global _hasher
    _hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism)


def hash_password_sync(password: str) -> str:
    return _hasher.hash(password)


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


def _fingerprint(stored: str, password: str) -> bytes:
    return hmac.new(_cache_key, stored.encode() + b"\0" + password.encode(), hashlib.sha256).digest()


def verify_password_sync(stored: str, password: str) -> bool:
    fp = _fingerprint(stored, password)
    hit = _cache.get(fp)
    now = time.monotonic()
    if hit is not None and hit > now:
        return True
    try:
        ok = _hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
    if ok:
        if len(_cache) >= _CACHE_MAX:
            _cache.clear()
        _cache[fp] = now + _CACHE_TTL
    return bool(ok)


async def verify_password(stored: str, password: str) -> bool:
    fp = _fingerprint(stored, password)
    hit = _cache.get(fp)
    if hit is not None and hit > time.monotonic():
        return True
    return await asyncio.to_thread(verify_password_sync, stored, password)


def generate_password(length: int = 24) -> str:
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"
    return "".join(secrets.choice(alphabet) for _ in range(length))

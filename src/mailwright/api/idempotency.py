"""`Idempotency-Key`: a retried create/send returns the first result instead of acting twice.

Dialect-neutral: a router wraps its handler with `idempotent(...)` and passes its own error
renderer. Semantics (Stripe's, which the hosted services follow):
- scope: (caller key id, Idempotency-Key, method + path); another key's identical
  Idempotency-Key is a different request. Records live 24 hours.
- the first request's status and body are stored when it finishes; a retry gets them back
  verbatim with `Idempotent-Replayed: true`.
- a retry while the first is still running gets 409 (`in_progress`), never a second run.
- the same key with a different body or query is a client bug: 422 (`key_reused`).
- 5xx and 429 answers are not stored (the operation may not have happened; retrying is right),
  and neither is an exception — the key is released so the retry runs again.
- stored bodies may hold secrets shown once (an inbox's password, a new API key), so they are
  encrypted (AES-256-GCM) under a key derived from the caller's *presented* API key and the
  Idempotency-Key. The database keeps only SHA-256(api key), from which that key cannot be
  derived: a database dump reveals no replayable secret.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Awaitable, Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from fastapi import Request
from fastapi.responses import Response

from mailwright.api.auth import presented_key, services
from mailwright.directory import idempotency as store

HEADER = "idempotency-key"
ErrorRenderer = Callable[[int, str, str], Response]  # (status, code, message) -> response


def _cipher_key(presented: str, idem_key: str) -> bytes:
    return hashlib.sha256(b"mailwright-idempotency\0" + presented.encode() + b"\0" + idem_key.encode()).digest()


def _seal(key: bytes, body: bytes) -> str:
    nonce = os.urandom(12)
    return "v1:" + base64.b64encode(nonce + AESGCM(key).encrypt(nonce, body, None)).decode()


def _open(key: bytes, stored: str) -> bytes | None:
    if not stored.startswith("v1:"):
        return None
    try:
        raw = base64.b64decode(stored[3:])
        return AESGCM(key).decrypt(raw[:12], raw[12:], None)
    except (ValueError, InvalidTag):
        return None


def _fingerprint(request: Request, body: bytes) -> str:
    h = hashlib.sha256()
    h.update(request.url.query.encode())
    h.update(b"\0")
    h.update(body)
    return h.hexdigest()


async def idempotent(request: Request, caller: str | None, handler: Callable[[], Awaitable[Response]],
                     error: ErrorRenderer) -> Response:
    key = request.headers.get(HEADER)
    if key is None:
        return await handler()
    key = key.strip()
    if not key or len(key) > 255:
        return error(400, "invalid_idempotency_key", "Idempotency-Key must be 1-255 characters")
    db = services(request).db
    who = caller or "env:platform"
    endpoint = f"{request.method} {request.url.path}"[:1024]
    fingerprint = _fingerprint(request, await request.body())
    cipher = _cipher_key(presented_key(request) or who, key)
    claim = await store.claim(db, who, key, endpoint, fingerprint)
    if claim.outcome == "reused":
        return error(422, "idempotency_key_reused", "this Idempotency-Key was used with a different request")
    if claim.outcome == "in_progress":
        return error(409, "idempotency_in_progress", "a request with this Idempotency-Key is still being processed")
    if claim.outcome == "replay":
        body = _open(cipher, claim.body or "")
        if body is None:
            return error(409, "idempotency_key_reused", "this Idempotency-Key belongs to another key")
        assert claim.status is not None
        return Response(content=body, status_code=claim.status, media_type=claim.content_type,
                        headers={"Idempotent-Replayed": "true"})
    try:
        resp = await handler()
    except BaseException:
        await store.release(db, who, key, endpoint)
        raise
    if resp.status_code >= 500 or resp.status_code == 429 or not hasattr(resp, "body"):
        await store.release(db, who, key, endpoint)
        return resp
    await store.finish(db, who, key, endpoint, resp.status_code, _seal(cipher, bytes(resp.body)),
                       resp.headers.get("content-type"))
    return resp

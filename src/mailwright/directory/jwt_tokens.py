"""JWTs of the self-service (mail.cx) dialect: what `POST /api/accounts` and `POST /api/token` return.

HS256 (PyJWT), claims `sub` (principal id), `address`, `iat`, `exp` (7 days, like the reference
service's tokens). The signing secret is `settings.jwt_secret` or, when empty, a random key
generated once per installation at `<data_dir>/jwt.key` (`storage.keyfile`), so every worker and
restart agrees; nodes of a cluster share the data dir or set the secret.

Revocation: a token issued before the account's last password change (`pw_changed_at`, unix
seconds in `Principal.extra`) is refused, so a reset password also ends every old session. The
comparison is on whole seconds with `iat` truncated, so a token minted in the same second as the
change is accepted (the change happened first: it is the new password's own sign-in).
Deleting the account makes its tokens useless (the principal is looked up on every request).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import jwt

from mailwright.config import Settings
from mailwright.storage.keyfile import load_or_create_key

TOKEN_LIFETIME = 7 * 24 * 3600
ALGORITHM = "HS256"

_secrets: dict[str, bytes] = {}


def signing_secret(settings: Settings) -> bytes:
    if settings.jwt_secret:
        return settings.jwt_secret.encode()
    path = settings.data_dir.resolve() / "jwt.key"
    key = str(path)
    if key not in _secrets:
        _secrets[key] = load_or_create_key(path)
    return _secrets[key]


def looks_like_jwt(token: str) -> bool:
    """Our API keys all have a `xx_` prefix; a JWT is three base64url parts starting `eyJ`."""
    return token.startswith("eyJ") and token.count(".") == 2


def issue(settings: Settings, principal_id: str, address: str, *, now: float | None = None) -> str:
    iat = int(time.time() if now is None else now)
    claims = {"sub": principal_id, "address": address, "iat": iat, "exp": iat + TOKEN_LIFETIME}
    return jwt.encode(claims, signing_secret(settings), algorithm=ALGORITHM)


@dataclass(frozen=True)
class Claims:
    principal_id: str
    address: str
    issued_at: int


def decode(settings: Settings, token: str) -> Claims | None:
    """The verified claims, or None for a bad signature, an expired or a malformed token."""
    try:
        data: dict[str, Any] = jwt.decode(token, signing_secret(settings), algorithms=[ALGORITHM],
                                          options={"require": ["sub", "iat", "exp"]})
    except jwt.PyJWTError:
        return None
    sub, iat = data.get("sub"), data.get("iat")
    if not isinstance(sub, str) or not isinstance(iat, int):
        return None
    return Claims(sub, str(data.get("address") or ""), iat)


def still_valid(claims: Claims, extra: dict[str, Any] | None) -> bool:
    """False when the password changed after the token was issued."""
    changed = (extra or {}).get("pw_changed_at")
    return not isinstance(changed, int | float) or claims.issued_at >= int(changed)

"""SMTP AUTH PLAIN / LOGIN for submission, checked by directory.logins and throttled.

aiosmtpd's own mechanisms call a *synchronous* authenticator; our password check is async
(Argon2id runs in a thread), so the two mechanisms are reimplemented here as protocol
methods. Before a password is even looked at, ``svc.login_throttle`` is asked whether this
client IP or this account name is locked out after a burst of failures: then the answer is
``454 4.7.0`` with the wait, the same for right and wrong passwords (no oracle).

Only PLAIN and LOGIN are offered (no CRAM-MD5: it needs the plaintext password stored), and
only once TLS is up (STARTTLS or the implicit-TLS port); the loopback exception of
``allow_plaintext_auth_on_loopback`` is honoured, for local tools and benchmarks.
"""

from __future__ import annotations

import binascii
import logging
from base64 import b64decode
from typing import Any

from aiosmtpd.smtp import MISSING, AuthResult

from mailwright.directory.logins import Account, login
from mailwright.services import Services
from mailwright.smtp.limits import SmtpLimits
from mailwright.smtp.protocol import MailwrightSMTP

log = logging.getLogger(__name__)


class SubmissionSMTP(MailwrightSMTP):
    """The submission protocol: MailwrightSMTP plus our async AUTH mechanisms."""

    def __init__(self, handler: Any, *, svc: Services, limits: SmtpLimits, **kwargs: Any) -> None:
        self.svc = svc
        super().__init__(handler, limits=limits, offer_auth=True, **kwargs)

    async def _login(self, username: bytes, password: bytes) -> AuthResult:
        user = username.decode("utf-8", "replace").strip()
        pw = password.decode("utf-8", "replace")
        ip = self.client_ip
        throttle = self.svc.login_throttle
        wait = throttle.blocked(ip, user)
        if wait > 0:
            await self.push(f"454 4.7.0 Too many failed logins, try again in {int(wait) + 1} seconds")
            return AuthResult(success=False, handled=True)
        account: Account | None = None
        try:
            account = await login(self.svc.db, user, pw)
        except Exception:
            log.exception("login check failed")
            await self.push("454 4.7.0 Temporary authentication failure")
            return AuthResult(success=False, handled=True)
        if account is None:
            throttle.failure(ip, user)
            return AuthResult(success=False, handled=False)
        throttle.success(ip, user)
        return AuthResult(success=True, handled=False, auth_data=account)

    async def auth_PLAIN(self, _: Any, args: list[str]) -> AuthResult:
        if len(args) == 1:
            blob = await self.challenge_auth("")
            if blob is MISSING:
                return AuthResult(success=False, handled=True)
            assert isinstance(blob, bytes)
        else:
            try:
                blob = b64decode(args[1].encode(), validate=True)
            except (binascii.Error, ValueError):
                await self.push("501 5.5.2 Can't decode base64")
                return AuthResult(success=False, handled=True)
        parts = blob.split(b"\x00")
        if len(parts) != 3:
            await self.push("501 5.5.2 Can't split auth value")
            return AuthResult(success=False, handled=True)
        authz, user, password = parts
        if authz and authz != user:
            # Acting for another identity (RFC 4616 authzid) is not supported.
            await self.push("535 5.7.8 Authentication credentials invalid")
            return AuthResult(success=False, handled=True)
        return await self._login(user, password)

    async def auth_LOGIN(self, _: Any, args: list[str]) -> AuthResult:
        if len(args) == 1:
            user = await self.challenge_auth(self.AuthLoginUsernameChallenge)
            if user is MISSING:
                return AuthResult(success=False, handled=True)
        else:
            try:
                user = b64decode(args[1].encode(), validate=True)
            except (binascii.Error, ValueError):
                await self.push("501 5.5.2 Can't decode base64")
                return AuthResult(success=False, handled=True)
        password = await self.challenge_auth(self.AuthLoginPasswordChallenge)
        if password is MISSING:
            return AuthResult(success=False, handled=True)
        assert isinstance(user, bytes) and isinstance(password, bytes)
        return await self._login(user, password)

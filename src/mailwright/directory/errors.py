"""Service-level errors. Each dialect router renders them in its own error shape."""

from __future__ import annotations


class DirectoryError(Exception):
    code = "other"

    def __init__(self, message: str, *, field: str | None = None, value: object = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.value = value


class NotFound(DirectoryError):
    code = "notFound"


class AlreadyExists(DirectoryError):
    code = "fieldAlreadyExists"


class Invalid(DirectoryError):
    code = "invalid"


class MissingField(DirectoryError):
    code = "fieldMissing"


class Forbidden(DirectoryError):
    code = "forbidden"


class LimitReached(DirectoryError):
    code = "limitReached"


class QuotaExceeded(DirectoryError):
    code = "quotaExceeded"


class DomainLimitReached(LimitReached):
    """The tenant (or a reseller above it) already has its `max_domains` domains."""


class MailboxLimitReached(LimitReached):
    """The tenant (or a reseller above it) already has its `max_mailboxes` mailboxes."""

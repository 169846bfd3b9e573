"""API plumbing shared by every dialect: stored Idempotency-Key results.

One row per (caller key, Idempotency-Key, method + path). `status` is NULL while the first
request is still running, so a concurrent retry can be told "in progress" instead of running
the operation twice. Rows expire after 24 hours (Stripe's rule), swept lazily.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from mailwright.storage.models.base import Base, BigIntPK, UTCDateTime, utcnow


class IdempotencyRecord(Base):
    __tablename__ = "idempotency_records"
    __table_args__ = (UniqueConstraint("caller", "idem_key", "endpoint"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    caller: Mapped[str] = mapped_column(String(64))  # the API key id ("env:platform" for the env token)
    idem_key: Mapped[str] = mapped_column(String(255))
    endpoint: Mapped[str] = mapped_column(String(1024))  # "POST /v1/inboxes"
    request_hash: Mapped[str] = mapped_column(String(64))  # SHA-256 of query + body: reuse with other input = 422
    status: Mapped[int | None] = mapped_column(Integer)  # NULL = first request still running
    body: Mapped[str | None] = mapped_column(Text)
    content_type: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)

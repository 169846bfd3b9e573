"""Delivery models: the durable outbound queue and send-rate counters.

A queued message is its blob (content-addressed, fsynced) plus one row here; each envelope
recipient has its own row with its own status, attempt count, next attempt time and lease, so
one slow or failing destination never holds the others back. A message row is deleted when no
recipient is pending any more (as Postfix removes a queue file once every recipient is done).
`delay_notice_at` records that the one delay DSN of a message was queued (never a second one).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from mailwright.storage.models.base import Base, BigIntPK, UTCDateTime, utcnow


class QueuedMessage(Base):
    __tablename__ = "queue_messages"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str | None] = mapped_column(String(36), index=True)
    principal_id: Mapped[str | None] = mapped_column(String(36))
    blob_hash: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    mail_from: Mapped[str] = mapped_column(String(320))  # "" for bounces
    kind: Mapped[str] = mapped_column(String(16), default="submission")  # submission | forward | dsn
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # When its delay notice (RFC 3464 Action: delayed) was queued; None = not (yet) sent.
    delay_notice_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class QueuedRecipient(Base):
    __tablename__ = "queue_recipients"
    __table_args__ = (Index("ix_queue_recipients_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    queue_id: Mapped[int] = mapped_column(ForeignKey("queue_messages.id", ondelete="CASCADE"), index=True)
    rcpt: Mapped[str] = mapped_column(String(320))
    domain: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | sent | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    remote_mta: Mapped[str | None] = mapped_column(String(255))  # the host that gave the last answer
    dsn_sent: Mapped[bool] = mapped_column(Boolean, default=False)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)  # a worker owns it until then
    lease_token: Mapped[str | None] = mapped_column(String(36))  # which claim owns it
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class SendCounter(Base):
    """Messages sent by an account in a fixed window; shared by every `serve` process."""

    __tablename__ = "send_counters"

    principal_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    window: Mapped[str] = mapped_column(String(8), primary_key=True)  # "h" | "d"
    window_start: Mapped[int] = mapped_column(BigInteger, primary_key=True)  # epoch seconds
    count: Mapped[int] = mapped_column(Integer, default=0)

"""POP3 maildrop locks: one POP3 session per maildrop at a time, across every serve process."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from mailwright.storage.models.base import Base, UTCDateTime


class MaildropLock(Base):
    __tablename__ = "maildrop_locks"

    principal_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)

"""Mailstore models: mailboxes, messages, per-mailbox entries (uid/modseq/flags), tombstones.

A message row belongs to one account (principal) and points at a blob by SHA-256; the blob
itself is shared by every recipient of the same bytes. ENVELOPE/BODYSTRUCTURE are kept as
ready-to-send IMAP text so a client sync is database reads only.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from mailwright.storage.models.base import Base, BigIntPK, UTCDateTime, utcnow
from mailwright.storage.texttypes import CleanText, WireText


class Mailbox(Base):
    __tablename__ = "mailboxes"
    __table_args__ = (UniqueConstraint("principal_id", "name"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    principal_id: Mapped[str] = mapped_column(ForeignKey("principals.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(1024))  # UTF-8, hierarchy separator "/"
    special_use: Mapped[str | None] = mapped_column(String(32))  # \Sent, \Trash, ...
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    uidnext: Mapped[int] = mapped_column(BigInteger, default=1)
    highestmodseq: Mapped[int] = mapped_column(BigInteger, default=1)
    subscribed: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Blob(Base):
    """One row per stored blob file; deleted (and the file unlinked) when no message uses it."""

    __tablename__ = "blobs"

    hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class BlobJournal(Base):
    """Bytes of a small blob whose file is not yet written and synced (storage/blobjournal.py).

    The row commits with the message that references the blob, so the commit alone makes the
    message durable; the row is deleted once the file has been synced, or restored from it.
    `owner` names the file system whose flusher writes the file (host and blob directory).
    """

    __tablename__ = "blob_journal"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    # Indexed by digest only (readers look rows up by it); owner and age are scanned for: see
    # storage/blobjournal.py.
    owner: Mapped[str] = mapped_column(String(512))
    digest: Mapped[str] = mapped_column(String(64), index=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        Index("ix_messages_principal_thread", "principal_id", "thread_id"),
        # delivery looks for a reply that arrived before its parent (mailstore/messages.py)
        Index("ix_messages_principal_in_reply_to", "principal_id", "in_reply_to"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    # no index of its own: the two composite indexes above lead with it
    principal_id: Mapped[str] = mapped_column(ForeignKey("principals.id", ondelete="CASCADE"))
    blob_hash: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    vsize: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # IMAP RFC822.SIZE: bare LF counted as CRLF
    internal_date: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    envelope: Mapped[str] = mapped_column(WireText)
    bodystructure: Mapped[str] = mapped_column(WireText)
    body: Mapped[str] = mapped_column(WireText)
    header_size: Mapped[int] = mapped_column(Integer, default=0)
    subject: Mapped[str] = mapped_column(CleanText, default="")
    base_subject: Mapped[str] = mapped_column(CleanText, default="")
    from_addr: Mapped[str] = mapped_column(CleanText, default="")
    from_display: Mapped[str] = mapped_column(CleanText, default="")
    to_addrs: Mapped[str] = mapped_column(CleanText, default="")  # comma-separated
    cc_addrs: Mapped[str] = mapped_column(CleanText, default="")
    # both cut to messages.MAX_INDEXED_ID characters (indexed; PostgreSQL limits index entries)
    message_id_header: Mapped[str | None] = mapped_column(CleanText, index=True)
    in_reply_to: Mapped[str | None] = mapped_column(CleanText)
    references: Mapped[str | None] = mapped_column(CleanText)  # space-separated msg-ids
    sent_date: Mapped[datetime | None] = mapped_column(UTCDateTime)
    preview: Mapped[str] = mapped_column(CleanText, default="")
    search_text: Mapped[str | None] = mapped_column(CleanText, nullable=True)  # decoded text for SEARCH BODY/TEXT
    has_attachment: Mapped[bool] = mapped_column(Boolean, default=False)
    thread_id: Mapped[str] = mapped_column(String(36))
    mail_from: Mapped[str | None] = mapped_column(String(320))  # envelope sender, if received by SMTP
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class MailboxEntry(Base):
    """A message's presence in a mailbox: the IMAP view (uid, modseq, flags)."""

    __tablename__ = "mailbox_entries"
    __table_args__ = (
        UniqueConstraint("mailbox_id", "uid"),
        Index("ix_mailbox_entries_modseq", "mailbox_id", "modseq"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id", ondelete="CASCADE"))
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), index=True)
    uid: Mapped[int] = mapped_column(BigInteger)
    modseq: Mapped[int] = mapped_column(BigInteger)
    flags: Mapped[str] = mapped_column(Text, default="")  # space-separated, e.g. "\\Seen $Forwarded"


class Tombstone(Base):
    """An expunged uid and the modseq of its expunge, for QRESYNC VANISHED and JMAP /changes."""

    __tablename__ = "tombstones"
    __table_args__ = (Index("ix_tombstones_mailbox_modseq", "mailbox_id", "modseq"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id", ondelete="CASCADE"))
    uid: Mapped[int] = mapped_column(BigInteger)
    modseq: Mapped[int] = mapped_column(BigInteger)

"""All models, imported here so `Base.metadata` knows every table."""

from mailwright.storage.models.api import IdempotencyRecord as IdempotencyRecord
from mailwright.storage.models.base import Base, new_id, utcnow
from mailwright.storage.models.delivery import QueuedMessage, QueuedRecipient, SendCounter
from mailwright.storage.models.directory import (
    Address,
    ApiKey,
    AuditEntry,
    Credential,
    DkimKeyRow,
    Domain,
    ListMember,
    Principal,
    RetiredDomain,
    Tenant,
    Workspace,
)
from mailwright.storage.models.mailstore import Blob, BlobJournal, Mailbox, MailboxEntry, Message, Tombstone
from mailwright.storage.models.pop3 import MaildropLock as MaildropLock
from mailwright.storage.models.webhooks import Webhook as Webhook
from mailwright.storage.models.webhooks import WebhookDelivery as WebhookDelivery

__all__ = [
    "Address", "ApiKey", "AuditEntry", "Base", "Blob", "BlobJournal", "Credential", "DkimKeyRow", "Domain",
    "ListMember", "Mailbox", "MailboxEntry", "Message", "Principal", "QueuedMessage",
    "QueuedRecipient", "RetiredDomain", "SendCounter", "Tenant", "Tombstone", "Workspace", "new_id", "utcnow",
]

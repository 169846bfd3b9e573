"""The service context handed to every protocol server and API router.

Built once per process by `runtime.node`; tests build their own to run several servers in one
process. Holds no per-request state.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field

from mailwright.config import Settings
from mailwright.directory.throttle import LoginThrottle
from mailwright.events.bus import EventBus
from mailwright.storage.blobs import BlobStore
from mailwright.storage.db import Database


@dataclass
class Services:
    settings: Settings
    db: Database
    blobs: BlobStore
    events: EventBus = field(default_factory=EventBus)
    login_throttle: LoginThrottle = field(default_factory=LoginThrottle)
    _started: bool = field(default=False, repr=False)

    @classmethod
    def create(cls, settings: Settings) -> Services:
        from mailwright.directory import passwords

        passwords.configure(settings.argon2_time_cost, settings.argon2_memory_kib, settings.argon2_parallelism)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        return cls(settings=settings, db=Database(settings.effective_database_url), blobs=BlobStore(settings.blob_dir))

    async def start(self) -> None:
        from mailwright.storage import blobjournal

        await self.db.migrate()
        self.blobs.fallback = functools.partial(blobjournal.lookup, self)  # files the flusher has yet to write
        # Before anything is served: blob files a crash may have lost come back from the journal.
        if restored := await blobjournal.recover(self):
            logging.getLogger(__name__).warning("restored %d blob files from the blob journal", restored)
        self._started = True
        if not self.db.is_sqlite:
            dsn = self.settings.effective_database_url.replace("postgresql+asyncpg://", "postgresql://")
            await self.events.connect_postgres(dsn)
        else:  # several worker processes on one SQLite file exchange events too: see events.bus
            self.events.connect_sqlite(self.db.url)

    async def close(self) -> None:
        if self._started:
            from mailwright.storage import blobjournal

            await blobjournal.close(self)
        await self.events.close()
        await self.db.close()

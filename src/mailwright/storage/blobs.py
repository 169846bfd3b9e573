"""Content-addressed blob store: message bytes as files named by their SHA-256.

A blob is written to a temporary file, fsynced, renamed into place and its directory fsynced,
so after `put` returns the bytes survive a crash or power loss; only then may the database
commit that references it (the order that makes a 250 safe). Identical messages to many
recipients are stored once. Files live under <root>/ab/cd/<hash>.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self._tmp = root / "tmp"
        self._tmp.mkdir(exist_ok=True)

    def path(self, digest: str) -> Path:
        return self.root / digest[:2] / digest[2:4] / digest

    @staticmethod
    def digest(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()

    async def put(self, data: bytes) -> str:
        digest = self.digest(data)
        if self.path(digest).exists():  # already stored (and fsynced) by an earlier put
            return digest
        # Always in a thread: the write is cheap but its two fsyncs are not (0.2 ms on a fast
        # virtio disk, 8+ ms on a busy one) and must not stall every connection of the loop.
        await asyncio.to_thread(self._put_sync, digest, data)
        return digest

    def _put_sync(self, digest: str, data: bytes) -> None:
        final = self.path(digest)
        if final.exists():
            return
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._tmp / f"{digest}.{os.getpid()}.{id(data)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)
        dfd = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    async def get(self, digest: str) -> bytes:
        p = self.path(digest)
        size = p.stat().st_size
        if size < 256 * 1024:
            return p.read_bytes()
        return await asyncio.to_thread(p.read_bytes)

    def get_sync(self, digest: str) -> bytes:
        return self.path(digest).read_bytes()

    async def ensure(self, digest: str, data: bytes) -> None:
        """Called after the commit that references `digest`: put the file back if a concurrent
        clean-up unlinked it in between. A blob's last reference can be deleted (and its file
        unlinked after that commit) while another delivery of the very same bytes found the
        file present, skipped writing it, and committed a new reference; the bytes are still in
        hand here, so nothing accepted is lost."""
        if not self.path(digest).exists():
            await asyncio.to_thread(self._put_sync, digest, data)

    def exists(self, digest: str) -> bool:
        return self.path(digest).exists()

    def delete(self, digest: str) -> None:
        try:
            self.path(digest).unlink()
        except FileNotFoundError:
            pass

"""Content-addressed blob store: message bytes as files named by their SHA-256.

A blob is written to a temporary file, fsynced, renamed into place and its directory fsynced,
so after `put` returns the bytes survive a crash or power loss; only then may the database
commit that references it (the order that makes a 250 safe). Identical messages to many
recipients are stored once.

Layout: a store created now keeps its files in 256 directories, <root>/ab/<hash> (the first
two hex digits). Stores made before kept two levels, <root>/ab/cd/<hash>, and still do: the
``LAYOUT`` file at the root says which (written when the store is first opened; a store
without it whose ab/ directories hold cd/ directories is a two-level one). Why one level:
with 65,536 leaf directories nearly every message of a young store (the first few hundred
thousand) landed in a directory that did not exist yet, and creating it durably (mkdir, then
an fsync of its parent, at each level) cost more than writing the message: 100 KiB on one
SMTP connection spent ~1.3 ms of its ~7 ms in it. 256 directories are all there after the first
few hundred messages, and a directory of a few hundred thousand names is what ext4's and
XFS's hashed directories are made for (Postfix's hashed queue uses one or two levels of 16;
Dovecot's sdbox keeps a whole mailbox in one directory).

The one exception: a small delivered message has no file at first. Its bytes commit in the
blob journal (storage.blobjournal), whose flusher writes the file afterwards; until then `get`
finds them through `fallback` (the journal lookup, set by Services.start).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import hashlib
import os
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path

LAYOUT_FILE = "LAYOUT"
_HEX = frozenset("0123456789abcdef")


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self._tmp = root / "tmp"
        self._tmp.mkdir(exist_ok=True)
        self._prefix = str(root) + os.sep  # string paths on the delivery path: pathlib costs µs per join
        self.levels = _layout(root, self._tmp)  # directory levels above a file: 1, or 2 in older stores
        self._dirs: set[str] = set()  # <root>/ab (or ab/cd) directories known to exist durably
        self._dirs_unsynced: set[str] = set()  # ... known to exist, perhaps not durably yet
        # Bytes of a blob that has no file yet (storage.blobjournal.lookup); None when unknown.
        self.fallback: Callable[[str], Awaitable[bytes | None]] | None = None

    def path(self, digest: str) -> Path:
        return Path(self.fspath(digest))

    def fspath(self, digest: str) -> str:
        """The file's path as a string (IMAP's inline read and the delivery path use it)."""
        if self.levels == 1:
            return f"{self._prefix}{digest[:2]}/{digest}"
        return f"{self._prefix}{digest[:2]}/{digest[2:4]}/{digest}"

    @staticmethod
    def digest(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()

    async def put(self, data: bytes, digest: str | None = None) -> str:
        """Store `data` durably; `digest` when the caller has already hashed it."""
        # Always in a thread: the write is cheap but its two fsyncs are not (0.2 ms on a fast
        # virtio disk, 8+ ms on a busy one) and must not stall every connection of the loop.
        return await self.put_started(data, digest or self.digest(data))

    def put_started(self, data: bytes, digest: str) -> asyncio.Future[str]:
        """`put`, handed to a thread at once (a coroutine would start only when the caller next
        awaits): the caller has CPU work to do meanwhile (groupcommit parses the message)."""
        return asyncio.get_running_loop().run_in_executor(None, self._put_sync, digest, data)

    def _put_sync(self, digest: str, data: bytes) -> str:
        final = self.fspath(digest)
        if not os.path.exists(final):
            self._write(digest, data, durable=True)
            return digest
        # Already there, but perhaps written unsynced by the blob journal's flusher, whose
        # syncfs has not run yet: sync it (nearly free when it is clean) before anything
        # references it without a journal row.
        self._sync_existing(final)
        return digest

    def _sync_existing(self, final: str) -> None:
        """Make a file that is already in place durable: its bytes, and its entry in every
        directory up to the root."""
        fd = os.open(final, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        parent = os.path.dirname(final)
        if parent not in self._dirs:
            self._make_dirs(parent, durable=True)
        _fsync_dir(parent)

    def put_unsynced(self, digest: str, data: bytes) -> bool:
        """Write the file with no fsync, for a blob whose bytes are kept durable some other way
        until `sync_filesystem` has run (the blob journal's flusher); False when it existed."""
        if os.path.exists(self.fspath(digest)):
            return False
        self._write(digest, data, durable=False)
        return True

    def restore_sync(self, digest: str, data: bytes) -> bool:
        """Make the file hold exactly `data`, durably; True when it had to be (re)written."""
        final = self.fspath(digest)
        try:
            with open(final, "rb") as fh:
                intact = hashlib.sha256(fh.read()).hexdigest() == digest
        except FileNotFoundError:
            intact = False
        if intact:
            self._sync_existing(final)
            return False
        self._write(digest, data, durable=True)
        return True

    def sync_filesystem(self) -> None:
        """Flush every written file of the blob store's file system to disk (syncfs(2))."""
        fd = os.open(self.root, os.O_RDONLY)
        try:
            if _libc_syncfs is None or _libc_syncfs(fd) != 0:
                os.sync()
        finally:
            os.close(fd)

    def _write(self, digest: str, data: bytes, *, durable: bool) -> None:
        """Write to a temporary name, then rename into place (readers never see part of a
        file); durable: the file and its directory entry are fsynced too."""
        final = self.fspath(digest)
        parent = os.path.dirname(final)
        if parent not in self._dirs and (durable or parent not in self._dirs_unsynced):
            self._make_dirs(parent, durable=durable)
        tmp = f"{self._tmp}{os.sep}{digest}.{os.getpid()}.{threading.get_ident()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)
        if durable:
            _fsync_dir(parent)

    def _make_dirs(self, parent: str, *, durable: bool) -> None:
        """Create <root>/ab (or <root>/ab/cd). Durable: each level's entry is fsynced in its
        parent, even when the directory exists already (another process may have made it
        unsynced, see `put_unsynced`), or a power loss could take the directory, and every blob
        in it, away. Unsynced: no fsync, the next `sync_filesystem` covers the directories too."""
        levels = [parent] if self.levels == 1 else [os.path.dirname(parent), parent]
        for d in levels:
            if not os.path.isdir(d):
                with contextlib.suppress(FileExistsError):
                    os.mkdir(d, 0o750)
            if durable:
                _fsync_dir(os.path.dirname(d))
        (self._dirs if durable else self._dirs_unsynced).add(parent)

    async def get(self, digest: str) -> bytes:
        p = self.path(digest)
        try:
            size = p.stat().st_size
            if size < 256 * 1024:
                return p.read_bytes()
            return await asyncio.to_thread(p.read_bytes)
        except FileNotFoundError:
            if self.fallback is None:
                raise
        data = await self.fallback(digest)
        if data is not None:
            return data
        # Not in the journal either: its flusher wrote the file and dropped the row meanwhile.
        return p.read_bytes()

    def get_sync(self, digest: str) -> bytes:
        return self.path(digest).read_bytes()

    async def ensure(self, digest: str, data: bytes) -> None:
        """Called after the commit that references `digest`: put the file back if a concurrent
        clean-up unlinked it in between. A blob's last reference can be deleted (and its file
        unlinked after that commit) while another delivery of the very same bytes found the
        file present, skipped writing it, and committed a new reference; the bytes are still in
        hand here, so nothing accepted is lost."""
        if not self.exists(digest):
            await asyncio.to_thread(self._put_sync, digest, data)

    def exists(self, digest: str) -> bool:
        """A stat: cheap enough for the event loop (the inode is in the page cache)."""
        return os.path.exists(self.fspath(digest))

    def delete(self, digest: str) -> None:
        try:
            self.path(digest).unlink()
        except FileNotFoundError:
            pass


def _find_syncfs() -> Callable[[int], int] | None:
    """libc's syncfs(2) (Linux), which the os module does not offer; else os.sync() is used."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn: Callable[[int], int] = libc.syncfs
        return fn
    except (OSError, AttributeError):
        return None


_libc_syncfs = _find_syncfs()


def _layout(root: Path, tmp: Path) -> int:
    """The store's directory levels, from its LAYOUT file; a store without one is given one,
    after what its directories show (`_levels_found`). Several processes may open a new store
    at once: the file is linked into place whole, and the first link wins."""
    marker = root / LAYOUT_FILE
    if not marker.exists():
        staged = tmp / f"{LAYOUT_FILE}.{os.getpid()}.{threading.get_ident()}"
        with open(staged, "w") as fh:
            fh.write(f"{_levels_found(root)}\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(staged, marker)
            _fsync_dir(str(root))
        except FileExistsError:
            pass
        finally:
            staged.unlink()
    levels = int(marker.read_text().split()[0])
    if levels not in (1, 2):
        raise ValueError(f"{marker}: unknown blob store layout {levels}")
    return levels


def _levels_found(root: Path) -> int:
    """The levels of a store that has no LAYOUT file: 2 if an ab/ directory holds cd/
    directories (a store made before the file existed), else 1 (also for an empty store)."""
    for top in os.listdir(root):
        if len(top) == 2 and set(top) <= _HEX:
            for name in os.listdir(root / top):
                if len(name) == 2 and set(name) <= _HEX:
                    return 2
                if len(name) == 64:
                    return 1
    return 1


def _fsync_dir(path: str) -> None:
    dfd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)

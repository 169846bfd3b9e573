"""The blob store's directory layout: one level (ab/<hash>) for a new store, two levels
(ab/cd/<hash>) kept for a store made before the LAYOUT file existed (storage/blobs.py)."""

from __future__ import annotations

import asyncio
import re
import signal
import threading
from collections.abc import Callable
from pathlib import Path

from mailwright.storage.blobs import LAYOUT_FILE, BlobStore
from tests.support.dnsserver import DnsServer, dns_server
from tests.support.server import ServeProcess, mx_env
from tests.test_blob_journal import _bodies, _message, _send, _setup

__all__ = ["dns_server"]

_BLOB_NAME = re.compile(r"[0-9a-f]{64}")


def _blob_files(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*") if p.is_file() and _BLOB_NAME.fullmatch(p.name)}


def test_a_new_store_is_one_level_and_an_old_one_keeps_two(
    tmp_path: Path, database_url: str, dns_server: Callable[..., DnsServer]
) -> None:
    token, env = mx_env(dns_server)
    data = tmp_path / "data"
    blobs = data / "blobs"
    first, second = _message(1, 40 * 1024), _message(2, 40 * 1024)  # past the journal: a file at once
    proc = ServeProcess(data, database_url, extra_env=env).start()
    try:
        _setup(proc.ports["http"], token)
        _send(proc.ports["smtp"], [first])
        assert (blobs / LAYOUT_FILE).read_text() == "1\n"
        [one] = _blob_files(blobs)
        assert one.parts == (one.name[:2], one.name), "new store: ab/<hash>"
    finally:
        proc.kill(signal.SIGTERM)

    # What a store written before the LAYOUT file looks like: two levels, no LAYOUT.
    legacy = blobs / one.name[:2] / one.name[2:4] / one.name
    legacy.parent.mkdir()
    (blobs / one).rename(legacy)
    (blobs / LAYOUT_FILE).unlink()

    proc.start()
    try:
        assert (blobs / LAYOUT_FILE).read_text() == "2\n"
        [body] = _bodies(proc.ports["imap"])
        assert body.endswith(first)
        _send(proc.ports["smtp"], [second])
        files = _blob_files(blobs)
        assert len(files) == 2
        assert all(p.parts == (p.name[:2], p.name[2:4], p.name) for p in files), files
        bodies = _bodies(proc.ports["imap"])
        assert [b[-len(first):] for b in bodies] == [first, second]
    finally:
        proc.kill(signal.SIGTERM)


def test_processes_opening_a_new_store_at_once_agree_on_its_layout(tmp_path: Path) -> None:
    root = tmp_path / "blobs"
    stores: list[BlobStore] = []
    start = threading.Barrier(8)

    def open_store() -> None:
        start.wait()
        stores.append(BlobStore(root))

    threads = [threading.Thread(target=open_store) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [s.levels for s in stores] == [1] * 8
    assert (root / LAYOUT_FILE).read_text() == "1\n"
    assert list((root / "tmp").iterdir()) == [], "no staged LAYOUT file left behind"


def test_a_one_level_store_that_lost_its_layout_file_stays_one_level(tmp_path: Path) -> None:
    root = tmp_path / "blobs"
    store = BlobStore(root)
    digest = asyncio.run(store.put(b"Subject: kept\r\n\r\nbody\r\n"))
    (root / LAYOUT_FILE).unlink()
    again = BlobStore(root)
    assert again.levels == 1
    assert asyncio.run(again.get(digest)) == b"Subject: kept\r\n\r\nbody\r\n"

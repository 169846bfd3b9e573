"""Secrets generated once per installation and kept in the data directory (SRS, JWT signing).

Every worker and every restart must use the same key, and several workers may start at once:
the key is written to a temp file, fsynced, then hard-linked into place so the first writer wins
and everyone reads what won. Nodes of a cluster share the data dir or set the key explicitly.
"""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path


def load_or_create_key(path: Path) -> bytes:
    try:
        data = path.read_bytes().strip()
        if data:
            return data
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    data = base64.b64encode(secrets.token_bytes(32))
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return path.read_bytes().strip()

"""Content fingerprint: "is this exactly the file we already did?" without reading all of it.

Size + mtime are the cheap first check; a hash of the first and last 64 KiB (with the size)
decides when they differ — a `touch` keeps the hash, a replaced or re-encoded file does not.
"""

from __future__ import annotations

import hashlib
import os

CHUNK = 64 * 1024


def content_hash(path: str | os.PathLike, size: int) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(size.to_bytes(8, "little"))
    with open(path, "rb") as f:
        h.update(f.read(CHUNK))
        if size > 2 * CHUNK:
            f.seek(size - CHUNK)
            h.update(f.read(CHUNK))
        elif size > CHUNK:
            h.update(f.read())
    return h.hexdigest()

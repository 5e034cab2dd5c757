"""A cheap content fingerprint of a photo file: size + first 64 KiB + last 64 KiB.

The fingerprint recognises a file that was renamed, moved or copied (its bytes are the same), so
its stored vector is reused without decoding or running the model again. It reads at most 128 KiB
whatever the file's size, which keeps re-scanning a large library on a slow drive fast.

It is not a cryptographic identity of the whole file: two files of the same size whose first and
last 64 KiB agree but whose middles differ get the same fingerprint. For photos this does not
happen in practice (JPEG, PNG, HEIF and TIFF files carry their metadata at the head and their
compressed data end at the tail, so an edit changes one of them, and almost always the size too).
Files of up to 128 KiB are hashed whole.
"""

from __future__ import annotations

import hashlib
import logging
import os

logger = logging.getLogger(__name__)

CHUNK_BYTES = 64 * 1024
"""How many bytes are read from each end of the file."""

DIGEST_BYTES = 16
"""Size of the digest: 16 bytes, written as 32 hexadecimal characters."""

_PERSON = b"ladderlens-ht-v1"  # blake2b personalisation (16 bytes): versions the scheme


def content_hash(path: str | os.PathLike[str], size: int | None = None) -> str:
    """Return the head+tail fingerprint of a file as a hexadecimal string.

    Args:
        path: the file to fingerprint.
        size: the file's size in bytes if the caller already knows it (from a directory scan); the
            file is then not stat'ed again. When the file has changed size since, the fingerprint
            describes the bytes read and the given size, which will differ from the next scan's.

    Raises:
        OSError: the file cannot be opened or read (missing, permission denied, I/O error).
    """
    with open(path, "rb") as f:
        if size is None:
            size = os.fstat(f.fileno()).st_size
        digest = hashlib.blake2b(digest_size=DIGEST_BYTES, person=_PERSON)
        digest.update(size.to_bytes(8, "little", signed=False))
        head = f.read(CHUNK_BYTES)
        digest.update(head)
        if size > CHUNK_BYTES:
            # The tail never overlaps the head, so a file of up to 2 * CHUNK_BYTES is hashed whole.
            f.seek(max(CHUNK_BYTES, size - CHUNK_BYTES))
            digest.update(f.read(CHUNK_BYTES))
    return digest.hexdigest()

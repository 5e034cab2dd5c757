from __future__ import annotations

import os
import shutil

import pytest

from core.hashing import CHUNK_BYTES, content_hash
from tests.core.access import call_obeying_permissions


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def test_same_bytes_same_hash_wherever_the_file_is(tmp_path):
    data = os.urandom(300_000)
    original = _write(tmp_path / "a.jpg", data)
    moved = tmp_path / "sub" / "renamed.JPG"
    moved.parent.mkdir()
    shutil.copyfile(original, moved)
    assert content_hash(original) == content_hash(moved)
    assert len(content_hash(original)) == 32 and int(content_hash(original), 16) >= 0


def test_given_size_gives_the_same_hash_as_a_stat(tmp_path):
    path = _write(tmp_path / "a.bin", os.urandom(200_000))
    assert content_hash(path, size=200_000) == content_hash(path)


@pytest.mark.parametrize("offset", [0, CHUNK_BYTES - 1, "last"])
def test_a_changed_byte_in_head_or_tail_changes_the_hash(tmp_path, offset):
    data = bytearray(os.urandom(5 * CHUNK_BYTES))
    before = content_hash(_write(tmp_path / "a", bytes(data)))
    index = len(data) - 1 if offset == "last" else offset
    data[index] ^= 0xFF
    assert content_hash(_write(tmp_path / "a", bytes(data))) != before


def test_the_middle_of_a_large_file_is_not_read(tmp_path):
    """Documented limit: only size, head and tail count (that is what makes it cheap)."""
    data = bytearray(os.urandom(5 * CHUNK_BYTES))
    before = content_hash(_write(tmp_path / "a", bytes(data)))
    data[2 * CHUNK_BYTES] ^= 0xFF
    assert content_hash(_write(tmp_path / "a", bytes(data))) == before


@pytest.mark.parametrize("size", [0, 1, CHUNK_BYTES, CHUNK_BYTES + 1, 2 * CHUNK_BYTES - 1, 2 * CHUNK_BYTES])
def test_small_files_are_hashed_whole(tmp_path, size):
    data = bytearray(os.urandom(size) if size else b"")
    before = content_hash(_write(tmp_path / "a", bytes(data)))
    if size:
        for index in {0, size // 2, size - 1}:
            changed = bytearray(data)
            changed[index] ^= 0x01
            assert content_hash(_write(tmp_path / "a", bytes(changed))) != before


def test_size_counts_even_when_head_and_tail_agree(tmp_path):
    head_tail = os.urandom(2 * CHUNK_BYTES)
    a = _write(tmp_path / "a", head_tail[:CHUNK_BYTES] + b"x" * 10 + head_tail[CHUNK_BYTES:])
    b = _write(tmp_path / "b", head_tail[:CHUNK_BYTES] + b"x" * 11 + head_tail[CHUNK_BYTES:])
    assert content_hash(a) != content_hash(b)


def test_unreadable_or_missing_file_raises_oserror(tmp_path):
    with pytest.raises(FileNotFoundError):
        content_hash(tmp_path / "missing.jpg")
    locked = _write(tmp_path / "locked.jpg", b"data")
    locked.chmod(0)
    with pytest.raises(PermissionError):
        call_obeying_permissions(lambda: content_hash(locked))

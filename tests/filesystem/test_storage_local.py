"""The local-disk backend: atomic writes, ranges, the pipelined writer for large uploads."""

from __future__ import annotations

import hashlib
import os

import pytest

from filesystem.storage import ChecksumMismatchError
from filesystem.storage.local import PIPELINE_AFTER, LocalStorage

MIB = 1024 * 1024


@pytest.fixture
def local(storage_root):
    return LocalStorage(storage_root)


def chunks(total: int, size: int = MIB):
    for index in range(total // size):
        yield (index.to_bytes(4, "big") * (size // 4))


def test_large_writes_go_through_the_writer_thread_and_hash_right(local):
    total = PIPELINE_AFTER * 5
    expected = hashlib.sha256(b"".join(chunks(total))).hexdigest()
    key = local.new_key()
    result = local.write(key, chunks(total))
    assert (result.size, result.sha256) == (total, expected)
    with local.open(key) as reader:
        assert hashlib.sha256(reader.read()).hexdigest() == expected
    with local.open(key, MIB + 3, 10) as reader:
        assert reader.read() == b"".join(chunks(total))[MIB + 3:MIB + 13]


@pytest.mark.parametrize("fail_after", [1, PIPELINE_AFTER // MIB + 3])
def test_a_stream_that_fails_midway_leaves_nothing(local, storage_root, fail_after):
    def broken():
        for index, chunk in enumerate(chunks(64 * MIB)):
            if index == fail_after:
                raise ConnectionResetError("client went away")
            yield chunk

    key = local.new_key()
    with pytest.raises(ConnectionResetError):
        local.write(key, broken())
    with pytest.raises(FileNotFoundError):
        local.size(key)
    assert os.listdir(storage_root / "tmp") == []


def test_a_checksum_mismatch_leaves_nothing(local, storage_root):
    key = local.new_key()
    with pytest.raises(ChecksumMismatchError):
        local.write(key, chunks(PIPELINE_AFTER * 2), expected_sha256="0" * 64)
    with pytest.raises(FileNotFoundError):
        local.size(key)
    assert os.listdir(storage_root / "tmp") == []


def test_copy_is_a_hard_link_of_an_immutable_blob(local):
    key, copy = local.new_key(), local.new_key()
    local.write(key, [b"same bytes"])
    local.copy(key, copy)
    assert os.stat(local._path(key)).st_ino == os.stat(local._path(copy)).st_ino
    local.delete(key)
    with local.open(copy) as reader:
        assert reader.read() == b"same bytes"


@pytest.mark.parametrize(("start", "length", "expected"), [
    (0, 11, b"hello world"), (6, 3, b"wor"), (6, 100, b"world"), (11, 5, b""), (0, 0, b""),
])
def test_small_reads_at_once(local, start, length, expected):
    key = local.new_key()
    local.write(key, [b"hello ", b"world"])
    assert local.read(key, start, length) == expected
    with local.open(key, start, length) as reader:  # the same bytes as the stream gives
        assert reader.read() == expected


def test_a_small_read_of_a_missing_blob_is_file_not_found(local):
    with pytest.raises(FileNotFoundError):
        local.read(local.new_key(), 0, 10)


def test_blobs_of_the_two_level_layout_are_still_found(local, storage_root):
    """Blobs written as blobs/ab/cd/<key> (before the one-level layout) stay readable."""
    key = local.new_key()
    legacy = storage_root / "blobs" / key[:2] / key[2:4] / key
    legacy.parent.mkdir(parents=True)
    legacy.write_bytes(b"written long ago")
    current = local.new_key()
    local.write(current, [b"new"])
    with local.open(key, 8) as reader:
        assert reader.read() == b"long ago"
    assert local.read(key, 0, 7) == b"written"
    assert local.size(key) == 16
    assert local.modified_at(key) == legacy.stat().st_mtime
    assert set(local.keys()) == {key, current}
    copy = local.new_key()
    local.copy(key, copy)
    assert local.read(copy, 0, 100) == b"written long ago"
    local.delete(key)
    assert not legacy.exists()
    with pytest.raises(FileNotFoundError):
        local.read(key, 0, 1)

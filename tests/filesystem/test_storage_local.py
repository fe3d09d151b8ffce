"""The local-disk backend: atomic writes, upload slots, ranges, the pipelined writer for large
uploads."""

from __future__ import annotations

import errno
import hashlib
import os
import threading
from types import SimpleNamespace

import pytest

from callfs_site import offload
from filesystem.storage import ChecksumMismatchError
from filesystem.storage import local as local_module
from filesystem.storage.local import PIPELINE_AFTER, SLOT_BATCH, LocalStorage

MIB = 1024 * 1024


@pytest.fixture
def local(storage_root):
    return LocalStorage(storage_root)


class _WatchedPool:
    """callfs_site.offload.submit that counts the work it was given and still has in flight."""

    def __init__(self, monkeypatch, fail_on_call: int | None = None):
        self.calls = 0
        self.futures = []
        self.fail_on_call = fail_on_call
        self._submit = offload.submit
        monkeypatch.setattr(offload, "submit", self.submit)

    def submit(self, fn, *args):
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise RuntimeError("can't start new thread")
        self.futures.append(self._submit(fn, *args))
        return self.futures[-1]

    def in_flight(self) -> int:
        return sum(not future.done() for future in self.futures)


def assert_nothing_left(local, storage_root, key: str, pool: _WatchedPool | None = None) -> None:
    """A failed write: no blob under its key, no temp file, no pool work still running."""
    with pytest.raises(FileNotFoundError):
        local.size(key)
    assert os.listdir(storage_root / "tmp") == []
    if pool is not None:
        assert pool.in_flight() == 0


def chunks(total: int, size: int = MIB):
    for index in range(total // size):
        yield (index.to_bytes(4, "big") * (size // 4))


class _RecordingSha256:
    """hashlib.sha256 that notes which thread hashed how many bytes."""

    def __init__(self, log: list):
        self._digest, self._log = hashlib.sha256(), log

    def update(self, data: bytes) -> None:
        self._log.append((threading.current_thread().name, len(data)))
        self._digest.update(data)

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


def test_large_writes_are_hashed_and_written_on_unpinned_pool_threads(local, monkeypatch):
    hashed, written, unpinned = [], [], []
    write_all = local_module._write_all
    monkeypatch.setattr(local_module, "hashlib",
                        SimpleNamespace(sha256=lambda: _RecordingSha256(hashed)))
    monkeypatch.setattr(local_module, "_write_all", lambda fd, data: (
        written.append((threading.current_thread().name, len(data))), write_all(fd, data)))
    monkeypatch.setattr(offload, "unpin_thread",
                        lambda: unpinned.append(threading.current_thread().name))
    pool = _WatchedPool(monkeypatch)
    total = PIPELINE_AFTER * 5
    expected = hashlib.sha256(b"".join(chunks(total))).hexdigest()
    key = local.new_key()
    result = local.write(key, chunks(total))
    assert (result.size, result.sha256) == (total, expected)
    inline = PIPELINE_AFTER // MIB
    request_thread = threading.current_thread().name
    for log in (hashed, written):
        assert log[:inline] == [(request_thread, MIB)] * inline
        assert len(log) == total // MIB
        assert all(name.startswith("callfs-offload") for name, size in log[inline:])
    # Two tasks a chunk past the inline part (fsync runs inline outside an event loop); each
    # task left the pin first.
    assert pool.calls == 2 * (total // MIB - inline) == len(unpinned)
    assert pool.in_flight() == 0
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
    assert_nothing_left(local, storage_root, key)


@pytest.mark.parametrize("stage", ["_write_all", "hashlib"])
def test_a_helper_that_fails_midway_fails_the_write_and_leaves_nothing(local, storage_root,
                                                                      monkeypatch, stage):
    calls = 0

    def fail_later(*args):
        nonlocal calls
        calls += 1
        if calls == PIPELINE_AFTER // MIB + 2:  # a helper's second chunk
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args)

    if stage == "hashlib":
        real_sha256 = hashlib.sha256

        def sha256():
            digest = real_sha256()
            return SimpleNamespace(update=lambda data: fail_later(digest, data),
                                   hexdigest=digest.hexdigest)
        real = real_sha256().__class__.update
        monkeypatch.setattr(local_module, "hashlib", SimpleNamespace(sha256=sha256))
    else:
        real = local_module._write_all
        monkeypatch.setattr(local_module, "_write_all", fail_later)
    pool = _WatchedPool(monkeypatch)
    key = local.new_key()
    with pytest.raises(OSError, match="No space left"):
        local.write(key, chunks(PIPELINE_AFTER * 4))
    assert_nothing_left(local, storage_root, key, pool)


@pytest.mark.parametrize("failing_call", [1, 2, 4])  # the first hash, write; a later write
def test_a_pool_that_cannot_take_work_fails_the_write_and_leaves_nothing(local, storage_root,
                                                                         monkeypatch, failing_call):
    pool = _WatchedPool(monkeypatch, fail_on_call=failing_call)
    key = local.new_key()
    with pytest.raises(RuntimeError, match="can't start new thread"):
        local.write(key, chunks(PIPELINE_AFTER * 2))
    assert_nothing_left(local, storage_root, key, pool)


def test_a_checksum_mismatch_leaves_nothing(local, storage_root):
    key = local.new_key()
    with pytest.raises(ChecksumMismatchError):
        local.write(key, chunks(PIPELINE_AFTER * 2), expected_sha256="0" * 64)
    assert_nothing_left(local, storage_root, key)


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


# --- upload slots: empty blob files made ahead, so an upload fsyncs only its own file ----------

@pytest.fixture
def fsyncs(monkeypatch):
    """The kinds of descriptor each os.fsync() got: 'file' or 'directory'."""
    synced: list[str] = []
    real = os.fsync

    def counting(fd: int) -> None:
        synced.append("directory" if os.path.isdir(f"/proc/self/fd/{fd}") else "file")
        real(fd)

    monkeypatch.setattr(os, "fsync", counting)
    return synced


@pytest.fixture
def blob_directories(local):
    """All 256 blob directories exist, as in any store past its first few hundred uploads."""
    for prefix in range(256):
        (local.blobs / f"{prefix:02x}").mkdir(parents=True, exist_ok=True)


def test_slots_are_made_in_a_batch_with_one_directory_fsync(local, blob_directories, fsyncs):
    key = local.new_upload_key()
    assert local.size(key) == 0  # the file exists, empty
    assert len(os.listdir(local._path(key).parent)) == SLOT_BATCH
    assert fsyncs == ["directory"]
    keys = {local.new_upload_key() for _ in range(SLOT_BATCH - 1)}
    assert fsyncs == ["directory"] and len(keys | {key}) == SLOT_BATCH  # none handed out twice
    local.new_upload_key()  # the batch is used up: the next one
    assert fsyncs == ["directory", "directory"]


def test_an_upload_into_a_slot_fsyncs_only_its_file(local, blob_directories, fsyncs):
    key = local.new_upload_key()
    inode_before = os.stat(local._path(key)).st_ino
    fsyncs.clear()
    result = local.write(key, [b"hello ", b"slot"])
    assert fsyncs == ["file"]
    assert os.stat(local._path(key)).st_ino == inode_before  # written in place, no rename
    assert (result.size, local.read(key, 0, 100)) == (10, b"hello slot")
    assert result.sha256 == hashlib.sha256(b"hello slot").hexdigest()


def test_a_key_from_elsewhere_is_renamed_into_place_and_its_directory_fsynced(
        local, blob_directories, fsyncs):
    key = local.new_key()  # e.g. a write relayed by a peer node
    local.write(key, [b"relayed"])
    assert fsyncs == ["file", "directory"]
    assert local.read(key, 0, 100) == b"relayed"


def test_a_failed_upload_removes_its_slot(local, storage_root):
    def broken():
        yield b"partial"
        raise ConnectionResetError("client went away")

    key = local.new_upload_key()
    with pytest.raises(ConnectionResetError):
        local.write(key, broken())
    with pytest.raises(FileNotFoundError):
        local.size(key)
    mismatched = local.new_upload_key()
    with pytest.raises(ChecksumMismatchError):
        local.write(mismatched, [b"bytes"], expected_sha256="0" * 64)
    with pytest.raises(FileNotFoundError):
        local.size(mismatched)


def test_a_slot_removed_meanwhile_falls_back_to_a_renamed_write(local):
    key = local.new_upload_key()
    os.unlink(local._path(key))  # e.g. fsck, or an operator
    local.write(key, [b"still stored"])
    assert local.read(key, 0, 100) == b"still stored"


def test_a_slot_unlinked_while_written_is_stored_again(local):
    """fsck --repair may take a slot whose upload stalled past its grace time: the bytes that
    were written into the unlinked file are stored again, not lost behind a 2xx."""
    key = local.new_upload_key()

    def stalled():
        yield b"first half, "
        os.unlink(local._path(key))
        yield b"second half"

    result = local.write(key, stalled())
    assert local.read(key, 0, 100) == b"first half, second half"
    assert result.sha256 == hashlib.sha256(b"first half, second half").hexdigest()


def test_old_slots_are_dropped_not_handed_out(local, monkeypatch):
    first = local.new_upload_key()
    unused = set(os.listdir(local._path(first).parent)) - {first}
    monkeypatch.setattr(local_module, "SLOT_LIFETIME", 0.0)
    fresh = local.new_upload_key()
    assert fresh not in unused
    assert not any(local._path(key).exists() for key in unused)


def test_a_forked_process_does_not_write_into_its_parents_slots(local, monkeypatch):
    parent_slot = local.new_upload_key()
    parent_unused = set(os.listdir(local._path(parent_slot).parent)) - {parent_slot}
    monkeypatch.setattr(local, "_slots_pid", -1)  # as after fork(): another pid made them
    assert local.new_upload_key() not in parent_unused
    slot_inode = os.stat(local._path(parent_slot)).st_ino
    local.write(parent_slot, [b"x"])  # handed out before the fork: now a plain renamed write
    assert local.read(parent_slot, 0, 1) == b"x"
    assert os.stat(local._path(parent_slot)).st_ino != slot_inode  # renamed over, not filled

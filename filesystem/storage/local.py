"""The local-disk backend: blobs as files under `<data dir>/blobs/ab/<key>`.

One level of 256 directories: they all exist after the first few hundred uploads, so an upload
creates no directory (two levels, 65,536 leaves, made nearly every upload of a young store create
one, and a new directory needs its parent fsynced too). ext4 indexes large directories.

Upload slots: a new name survives a crash only once its directory is fsynced, a second fsync per
upload after the file's own. So each process creates empty blob files ahead, SLOT_BATCH at a time
in one directory, with one directory fsync for the batch; an upload writes into one of them and
fsyncs only the file (durable small PUTs: three fsyncs become two). Unused slots are empty,
unreferenced files: the process drops its own after SLOT_LIFETIME, and fsck leaves empty
orphans younger than that (plus its grace period) alone, since another process may hold them.
"""

from __future__ import annotations

import hashlib
import io
import os
import secrets
import shutil
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from pathlib import Path

from callfs_site import offload
from callfs_site.files import fsync_directory
from filesystem.storage.base import (
    BlobReader,
    ChecksumMismatchError,
    StorageBackend,
    WriteResult,
)

WRITEBACK_BYTES = 16 * 1024 * 1024
PIPELINE_AFTER = 4 * 1024 * 1024
SLOT_BATCH = 64  # upload slots made at once, sharing one directory fsync
SLOT_LIFETIME = 3600.0  # seconds a process keeps an unused slot


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class _BlobSink:
    """Hashes and writes an upload. Past PIPELINE_AFTER bytes each chunk is hashed and written
    on two pool threads (callfs_site.offload) while the next one is received: sha256, write()
    and recv() all release the GIL, so the three run side by side instead of taking turns, and
    the event loop serving every other connection is never held for a large chunk. One chunk is
    in flight at a time, so an upload holds at most two in memory. Small uploads stay inline."""

    def __init__(self, fd: int):
        self.fd = fd
        self.digest = hashlib.sha256()
        self.size = self.flushed = 0
        self.pipelined = False
        self.pending: list[Future] = []

    def _write(self, chunk: bytes) -> None:
        _write_all(self.fd, chunk)
        self.size += len(chunk)
        if self.size - self.flushed >= WRITEBACK_BYTES:
            # Start writing this stretch to disk now, while the rest arrives, so the final
            # fsync has little left to wait for.
            os.posix_fadvise(self.fd, self.flushed, self.size - self.flushed,
                             os.POSIX_FADV_DONTNEED)
            self.flushed = self.size

    def add(self, chunk: bytes) -> None:
        if self.pipelined:
            self._wait()
            # The same bytes object to both: no copy. One at a time: should the second fail to
            # start, close() still waits for the first.
            self.pending.append(offload.submit(self.digest.update, chunk))
            self.pending.append(offload.submit(self._write, chunk))
            return
        self.digest.update(chunk)
        self._write(chunk)
        self.pipelined = self.size >= PIPELINE_AFTER

    def _wait(self) -> None:
        """Wait for the chunk in flight; raise what hashing or writing it failed with (only
        once both are done: nothing may touch the descriptor after the sink is closed)."""
        pending, self.pending = self.pending, []
        errors = [error for future in pending if (error := future.exception()) is not None]
        if errors:
            raise errors[0]

    def close(self) -> None:
        self._wait()


class LocalFileReader(BlobReader):
    """A byte range of a blob file. It keeps the real descriptor, positioned at the range start,
    so gunicorn's `wsgi.file_wrapper` sends it with sendfile(); `read()` stops at the range end
    for servers that copy through Python instead. Positions are those of the underlying file
    (socket.sendfile() seeks to `offset + sent` when it is done); SEEK_END is the range end."""

    def __init__(self, path: str | Path, start: int, length: int | None):
        super().__init__()
        self._file = open(path, "rb", buffering=0)  # noqa: SIM115 - closed by close()
        try:
            total = os.fstat(self._file.fileno()).st_size
            self._start = min(start, total)
            self._end = total if length is None else min(self._start + length, total)
            self._position = self._file.seek(self._start)
        except BaseException:
            self._file.close()
            raise

    def seekable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._file.fileno()

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._end}[whence]
        self._position = self._file.seek(max(base + offset, 0))
        return self._position

    def read(self, size: int = -1) -> bytes:
        remaining = self._end - self._position
        if remaining <= 0:
            return b""
        if size is None or size < 0 or size > remaining:
            size = remaining
        data = self._file.read(size)
        self._position += len(data)
        return data

    def close(self) -> None:
        self._file.close()
        super().close()


class LocalStorage(StorageBackend):
    """Blobs on this node's disk. A write fills an upload slot (see the module docstring) or,
    under a key from elsewhere (a peer's relayed write), a temp file renamed into place; either
    way the bytes are fsynced before write() returns, and only then can metadata point at them."""

    name = "localfs"

    def __init__(self, root: Path):
        self.root = Path(root)
        self.blobs = self.root / "blobs"
        self._blobs = str(self.blobs)
        self.tmp = self.root / "tmp"
        self._slots_lock = threading.Lock()
        self._slots: deque[tuple[str, float]] = deque()  # (key, made at: monotonic)
        self._slots_pid = os.getpid()  # a forked child must not write into its parent's slots
        self._handed_out: set[str] = set()  # slot keys given to uploads, not yet written

    def _file_name(self, key: str) -> str:
        if len(key) < 5 or not key.isalnum():
            raise FileNotFoundError(key)
        # A string join: pathlib's was a noticeable part of a small download (BENCHMARKS.md).
        return f"{self._blobs}/{key[:2]}/{key}"

    def _path(self, key: str) -> Path:
        return Path(self._file_name(key))

    def open(self, key: str, start: int = 0, length: int | None = None) -> LocalFileReader:
        return LocalFileReader(self._file_name(key), start, length)

    def read(self, key: str, start: int, length: int) -> bytes:
        return _pread(self._file_name(key), start, length)

    def new_upload_key(self) -> str:
        """The key of an upload slot: an empty blob file whose name is already on disk."""
        with self._slots_lock:
            self._check_owner()
            oldest_kept = time.monotonic() - SLOT_LIFETIME
            expired = []
            while self._slots and self._slots[0][1] < oldest_kept:
                expired.append(self._slots.popleft()[0])
            key = self._slots.popleft()[0] if self._slots else None
            if key is not None:
                self._handed_out.add(key)
        for old in expired:
            self.delete(old)
        if key is not None:
            return key
        batch = self._make_slots()  # outside the lock: a batch takes a directory fsync
        with self._slots_lock:
            self._check_owner()
            self._slots.extend(batch[1:])
            self._handed_out.add(batch[0][0])
        return batch[0][0]

    def _check_owner(self) -> None:
        """After fork() the slots are the parent's: forget them (with the slots lock held)."""
        if self._slots_pid != os.getpid():
            self._slots.clear()
            self._handed_out.clear()
            self._slots_pid = os.getpid()

    def _make_slots(self) -> list[tuple[str, float]]:
        prefix = secrets.token_hex(1)
        directory = Path(f"{self._blobs}/{prefix}")
        self._make_directory(directory)
        made = time.monotonic()
        keys = [prefix + secrets.token_hex(15) for _ in range(SLOT_BATCH)]  # as long as a uuid4
        # Off the event loop: a batch of creations takes milliseconds on a slow disk, and every
        # other connection of a gevent worker would wait for them.
        offload.run(_create_empty_files, directory, keys)
        fsync_directory(directory)
        return [(key, made) for key in keys]

    def write(self, key: str, chunks: Iterable[bytes], expected_sha256: str | None = None
              ) -> WriteResult:
        with self._slots_lock:
            self._check_owner()
            is_slot = key in self._handed_out
            self._handed_out.discard(key)
        if is_slot:
            try:
                fd = os.open(self._file_name(key), os.O_RDWR)  # RDWR: see _write_slot
            except FileNotFoundError:  # removed meanwhile (by hand, or fsck past its age)
                pass
            else:
                return self._write_slot(key, fd, chunks, expected_sha256)
        return self._write_renamed(key, chunks, expected_sha256)

    def _write_slot(self, key: str, fd: int, chunks: Iterable[bytes],
                    expected_sha256: str | None) -> WriteResult:
        try:
            result = _fill(fd, chunks, expected_sha256)
            if os.fstat(fd).st_nlink == 0:
                # Unlinked while it was written (fsck --repair during a long-stalled upload,
                # an operator): the bytes are only in this descriptor. Store them again.
                result = self._write_renamed(key, _read_back(fd), expected_sha256)
        except BaseException:
            os.close(fd)
            self.delete(key)  # a partial slot is never used: the key goes nowhere
            raise
        os.close(fd)
        return result

    def _write_renamed(self, key: str, chunks: Iterable[bytes], expected_sha256: str | None
                       ) -> WriteResult:
        target = self._path(key)
        try:
            fd, tmp_name = tempfile.mkstemp(prefix=".upload-", dir=self.tmp)
        except FileNotFoundError:
            self.tmp.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(prefix=".upload-", dir=self.tmp)
        try:
            result = _fill(fd, chunks, expected_sha256)
            os.close(fd)
            fd = -1
            try:
                os.replace(tmp_name, target)
            except FileNotFoundError:
                self._make_directory(target.parent)
                os.replace(tmp_name, target)
            fsync_directory(target.parent)  # the rename itself must survive a crash
        except BaseException:
            if fd >= 0:
                os.close(fd)
            try:
                os.unlink(tmp_name)
            except FileNotFoundError:
                pass
            raise
        return result

    def may_be_upload_slot(self, key: str, age: float) -> bool:
        """Could this unreferenced blob, last modified `age` seconds ago, be a live process's
        unused upload slot? (For fsck: such files must not be deleted.)"""
        return age < SLOT_LIFETIME and self.size(key) == 0

    def delete(self, key: str) -> None:
        try:
            os.unlink(self._file_name(key))
        except FileNotFoundError:
            pass

    def copy(self, source_key: str, target_key: str) -> None:
        source, target = self._file_name(source_key), self._path(target_key)
        self._make_directory(target.parent)
        try:
            # Blobs are immutable (an overwrite writes a new key): a hard link is a copy.
            os.link(source, target)
        except OSError as exc:
            if isinstance(exc, FileNotFoundError):
                raise
            shutil.copyfile(source, target)
        fsync_directory(target.parent)

    def _make_directory(self, directory: Path) -> None:
        """A blob directory (and any missing parent), durably: each new entry is fsynced into
        its parent, or a crash could take the directory and the blobs in it."""
        if directory.is_dir():
            return
        self._make_directory(directory.parent)
        try:
            directory.mkdir()
        except FileExistsError:
            pass  # another upload is making it: its entry may not be synced yet either
        fsync_directory(directory.parent)

    def size(self, key: str) -> int:
        return os.stat(self._file_name(key)).st_size

    def modified_at(self, key: str) -> float:
        return os.stat(self._file_name(key)).st_mtime

    def stale_temp_files(self, older_than: float) -> list[Path]:
        """Upload temp files left by a crash (a live upload touches its file continuously)."""
        if not self.tmp.is_dir():
            return []
        return [p for p in self.tmp.iterdir() if p.name.startswith(".upload-")
                and p.stat().st_mtime < older_than]

    def keys(self) -> Iterator[str]:
        if not self.blobs.is_dir():
            return
        for directory in sorted(self.blobs.iterdir()):
            yield from sorted(os.listdir(directory))

    def check(self) -> None:
        self.tmp.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".ready-", dir=self.tmp)
        os.close(fd)
        os.unlink(name)


def _fill(fd: int, chunks: Iterable[bytes], expected_sha256: str | None) -> WriteResult:
    """Write, hash and fsync a stream into `fd`; ChecksumMismatchError if it is not what the
    client announced."""
    sink = _BlobSink(fd)
    try:
        for chunk in chunks:
            sink.add(chunk)
    finally:
        sink.close()
    sha256 = sink.digest.hexdigest()
    if expected_sha256 is not None and expected_sha256.lower() != sha256:
        raise ChecksumMismatchError(sha256)
    offload.run(os.fsync, fd)
    return WriteResult(size=sink.size, sha256=sha256)


def _read_back(fd: int, chunk_size: int = 1024 * 1024) -> Iterator[bytes]:
    offset = 0
    while chunk := os.pread(fd, chunk_size, offset):
        yield chunk
        offset += len(chunk)


def _create_empty_files(directory: Path, names: list[str]) -> None:
    for name in names:
        os.close(os.open(f"{directory}/{name}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _pread(name: str, start: int, length: int) -> bytes:
    fd = os.open(name, os.O_RDONLY)
    try:
        parts, remaining = [], length
        while remaining > 0 and (chunk := os.pread(fd, remaining, start)):
            parts.append(chunk)
            remaining -= len(chunk)
            start += len(chunk)
        return b"".join(parts)
    finally:
        os.close(fd)

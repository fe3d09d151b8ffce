"""Request and response bodies: a local file sent in large reads and rewound for retries, an
iterator sent chunked while it is hashed, a body fed by writes from another thread (fsspec's
streamed writes), and where a download goes."""

from __future__ import annotations

import hashlib
import os
import queue
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, BinaryIO

from callfs_client.errors import CallFSError

if TYPE_CHECKING:
    from callfs_client.client import Client

Progress = Callable[[int], Any]
CHUNK = 1024 * 1024


def seekable(handle: Any) -> bool:
    try:
        return bool(handle.seekable())
    except (AttributeError, OSError, ValueError):
        return False


def hash_file(handle: BinaryIO, start: int) -> str:
    hasher = hashlib.sha256()
    handle.seek(start)
    while block := handle.read(CHUNK):
        hasher.update(block)
    handle.seek(start)
    return hasher.hexdigest()


def read_chunks(handle: BinaryIO) -> Iterator[bytes]:
    while block := handle.read(CHUNK):
        yield block


class CountedBody:
    """Passes chunks through, hashing and counting them, reporting progress."""

    def __init__(self, chunks: Iterator[bytes], hasher: Any, progress: Progress | None) -> None:
        self._chunks, self._hasher, self._progress = chunks, hasher, progress
        self.size = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            if not chunk:
                continue
            chunk = bytes(chunk)
            self._hasher.update(chunk)
            self.size += len(chunk)
            yield chunk
            if self._progress:
                self._progress(len(chunk))


class FileBody:
    """A seekable file as a request body: exactly `size` bytes from its position now, in 1 MiB
    reads, with progress. urllib3 seeks it back (`seek`) before retrying a request, and the
    progress goes back with it."""

    def __init__(self, handle: BinaryIO, size: int, progress: Progress | None) -> None:
        self._handle, self._start, self._size = handle, handle.tell(), size
        self._progress = progress
        self._position = 0

    def __len__(self) -> int:
        return self._size

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        target = {os.SEEK_SET: offset, os.SEEK_CUR: self._position + offset,
                  os.SEEK_END: self._size + offset}[whence]
        target = max(0, min(target, self._size))
        self._handle.seek(self._start + target)
        if self._progress and target != self._position:
            self._progress(target - self._position)
        self._position = target
        return target

    def read(self, amount: int = -1) -> bytes:
        left = self._size - self._position
        if amount is None or amount < 0:
            amount = left
        elif amount:
            amount = min(max(amount, CHUNK), left)  # urllib3 asks for 16 KiB: send more
        data = self._handle.read(amount) if amount else b""
        self._position += len(data)
        if self._progress and data:
            self._progress(len(data))
        return data


class DownloadSink:
    """Where a download goes: a binary file object, or a local path opened once the answer is
    known to be good; its byte count and running sha256; and whether it can start over (a
    local file can be truncated, a stream cannot)."""

    def __init__(self, *, handle: IO[bytes] | None = None, path: Path | None = None,
                 resume: bool = False) -> None:
        self.handle, self.path, self.resume = handle, path, resume
        self.offset = 0
        self.hasher = hashlib.sha256()

    def open(self) -> None:
        if self.handle is None and self.path is not None:
            self.handle = open(self.path, "r+b" if self.resume else "wb")

    def close(self) -> None:
        if self.path is not None and self.handle is not None:
            self.handle.close()

    def adopt_existing(self, progress: Progress | None) -> None:
        """Resume: the bytes already in the file count as received."""
        self.open()
        self.handle.seek(0)
        while block := self.handle.read(CHUNK):
            self.hasher.update(block)
            self.offset += len(block)
        if progress and self.offset:
            progress(self.offset)

    def write(self, chunk: bytes) -> None:
        self.handle.write(chunk)
        self.hasher.update(chunk)
        self.offset += len(chunk)

    def reset(self, progress: Progress | None) -> None:
        if self.path is None:
            raise CallFSError("FILE_CHANGED", "the file changed during the download")
        self.open()
        self.handle.seek(0)
        self.handle.truncate()
        if progress and self.offset:
            progress(-self.offset)
        self.offset = 0
        self.hasher = hashlib.sha256()


_END = object()
_ABORT = object()


class _Aborted(Exception):
    """Raised inside the request body to cut a streamed upload off: nothing is stored."""


class StreamedUpload:
    """One PUT (or create-only POST) whose body arrives by `send()`: a thread runs the request
    and pulls the chunks from a queue of `depth` blocks, so a slow network holds the writer
    back instead of filling memory."""

    def __init__(self, client: Client, path: str, *, create_only: bool, depth: int = 2) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(client, path, create_only),
                                        name=f"callfs-upload {path}", daemon=True)
        self._thread.start()

    def _body(self):
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if item is _ABORT:
                raise _Aborted()
            yield item

    def _run(self, client: Client, path: str, create_only: bool) -> None:
        try:
            client.upload(self._body(), path, create_only=create_only)
        except BaseException as exc:  # handed to the writer, which raises it
            self._error = exc

    def send(self, item: Any) -> None:
        """Queue a chunk (or _END/_ABORT); raises the upload's error if it already failed."""
        while True:
            if not self._thread.is_alive():
                self._raise()
                if item is _END or item is _ABORT:
                    return
                raise CallFSError("UPLOAD_ENDED", "the upload ended before all bytes were sent")
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def finish(self) -> None:
        self.send(_END)
        self._thread.join()
        self._raise()

    def abort(self) -> None:
        self.send(_ABORT)
        self._thread.join()

    def _raise(self) -> None:
        if self._error is not None and not isinstance(self._error, _Aborted):
            error, self._error = self._error, None
            raise error

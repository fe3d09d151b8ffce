"""The storage backend interface: move bytes for an opaque key, nothing about users or HTTP.

Backends raise built-ins (`FileNotFoundError` for a missing key) and `ChecksumMismatchError`;
the services turn those into API errors.
"""

from __future__ import annotations

import io
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO


class ChecksumMismatchError(ValueError):
    """The written bytes do not hash to the expected SHA-256; nothing was stored."""


class BackendUnavailable(Exception):
    """The backend cannot be reached or refused the operation (network, credentials, bucket)."""


class BlobReader(io.RawIOBase):
    """A readable byte stream of one blob; subclasses implement `read(size)`."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


@dataclass(frozen=True)
class WriteResult:
    size: int
    sha256: str


class StorageBackend(ABC):
    """Stores immutable blobs: a key is written once, then read, copied or deleted."""

    name: str

    @staticmethod
    def new_key() -> str:
        """A fresh opaque key (never derived from a path)."""
        return uuid.uuid4().hex

    def new_upload_key(self) -> str:
        """A fresh key for `write()` (copies take `new_key()`): a backend may hand out a key it
        has prepared to make the write cheaper."""
        return self.new_key()

    @abstractmethod
    def open(self, key: str, start: int = 0, length: int | None = None) -> BinaryIO:
        """A readable stream of `length` bytes from `start` (to the end if None)."""

    def read(self, key: str, start: int, length: int) -> bytes:
        """Up to `length` bytes from `start` at once, for small reads (fewer only at the end
        of the blob). Backends with a cheaper way than a stream override it."""
        parts, remaining = [], length
        with self.open(key, start, length) as reader:
            while remaining > 0 and (chunk := reader.read(remaining)):
                parts.append(chunk)
                remaining -= len(chunk)
        return b"".join(parts)

    @abstractmethod
    def write(self, key: str, chunks: Iterable[bytes], expected_sha256: str | None = None
              ) -> WriteResult:
        """Store the stream under `key` all-or-nothing: on any error nothing becomes visible."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the blob; a missing key is not an error."""

    @abstractmethod
    def copy(self, source_key: str, target_key: str) -> None:
        """Duplicate a blob inside this backend without sending its bytes through the caller."""

    @abstractmethod
    def size(self, key: str) -> int:
        """The stored size of the blob, or FileNotFoundError."""

    @abstractmethod
    def keys(self) -> Iterator[str]:
        """Every key the backend holds (for fsck)."""

    @abstractmethod
    def modified_at(self, key: str) -> float:
        """When the blob was written (Unix time), or FileNotFoundError (for fsck's grace time)."""

    @abstractmethod
    def check(self) -> None:
        """Raise if the backend cannot be used right now (for readiness probes)."""

"""The local disk of another node, through its internal blob API (`/v1/internal/blobs/<key>`).

To the services a peer's disk is one more backend: reads stream ranged GETs, writes stream a
chunked PUT that the peer stores atomically, copies happen on the peer. Bytes flow through in
chunks both ways, never buffered whole. Every request is signed (`cluster.signing`); a write's
bytes are bound to the signature by their sha256, known ahead or sent after them. Connection
failures raise `PeerUnavailable`.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from typing import BinaryIO

import requests

from callfs_site.errors import ErrorCode
from cluster import peers
from filesystem.storage.base import (
    BackendUnavailable,
    BlobReader,
    ChecksumMismatchError,
    StorageBackend,
    WriteResult,
)

CHUNK = 256 * 1024


class PeerUnavailable(BackendUnavailable):
    """The node holding the bytes cannot be reached."""


class PeerReader(BlobReader):
    """A streamed response body from a peer."""

    def __init__(self, response: requests.Response):
        super().__init__()
        self._response = response

    def read(self, size: int = -1) -> bytes:
        try:
            return self._response.raw.read(CHUNK if size is None or size < 0 else size)
        except Exception as exc:  # urllib3 raises its own protocol/timeout errors
            raise PeerUnavailable(f"reading from the peer failed: {exc}") from exc

    def close(self) -> None:
        self._response.close()
        super().close()


class PeerStorage(StorageBackend):
    """Blobs on node `node_id`'s disk."""

    name = "localfs"

    def __init__(self, node_id: str):
        self.node_id = node_id

    def _request(self, method: str, key: str, **kwargs) -> requests.Response:
        try:
            return peers.request(self.node_id, method, f"/v1/internal/blobs/{key}", **kwargs)
        except peers.PeerUnavailable as exc:
            raise PeerUnavailable(str(exc)) from exc

    def _failed(self, response: requests.Response, operation: str) -> BackendUnavailable:
        return BackendUnavailable(f"node {self.node_id!r} answered {response.status_code} to "
                                  f"{operation}")

    def open(self, key: str, start: int = 0, length: int | None = None) -> BinaryIO:
        if length == 0:
            return io.BytesIO(b"")
        headers = {}
        if start or length is not None:
            end = "" if length is None else str(start + length - 1)
            headers["Range"] = f"bytes={start}-{end}"
        response = self._request("GET", key, headers=headers, stream=True)
        if response.status_code == 404:
            response.close()
            raise FileNotFoundError(key)
        if response.status_code not in (200, 206):
            response.close()
            raise self._failed(response, "a read")
        return PeerReader(response)

    def write(self, key: str, chunks: Iterable[bytes], expected_sha256: str | None = None
              ) -> WriteResult:
        # The body goes out chunked: the upload streams through without buffering. A known
        # sha256 is signed and enforced by the peer; otherwise the peer checks a signed trailer.
        response = self._request("PUT", key, body=chunks, body_sha256=expected_sha256,
                                 headers={"Content-Type": "application/octet-stream"})
        if peers.error_code(response) is ErrorCode.CHECKSUM_MISMATCH:
            raise ChecksumMismatchError(key)
        if response.status_code != 201:
            raise self._failed(response, "a write")
        body = response.json()
        return WriteResult(size=int(body["size"]), sha256=body["sha256"])

    def delete(self, key: str) -> None:
        response = self._request("DELETE", key)
        if response.status_code not in (204, 404):
            raise self._failed(response, "a delete")

    def copy(self, source_key: str, target_key: str) -> None:
        response = self._request("PUT", target_key, headers={"X-CallFS-Copy-From": source_key})
        if response.status_code == 404:
            raise FileNotFoundError(source_key)
        if response.status_code != 201:
            raise self._failed(response, "a copy")

    def size(self, key: str) -> int:
        response = self._request("HEAD", key)
        if response.status_code == 404:
            raise FileNotFoundError(key)
        if response.status_code != 200:
            raise self._failed(response, "a size request")
        return int(response.headers["Content-Length"])

    def modified_at(self, key: str) -> float:
        raise BackendUnavailable(f"ask node {self.node_id!r} (manage.py fsck there)")

    def keys(self) -> Iterator[str]:
        raise BackendUnavailable(f"list node {self.node_id!r}'s blobs on that node "
                                 "(manage.py fsck there)")

    def check(self) -> None:
        try:
            response = peers.request(self.node_id, "GET", "/health")
        except peers.PeerUnavailable as exc:
            raise PeerUnavailable(str(exc)) from exc
        if response.status_code != 200:
            raise self._failed(response, "a health check")

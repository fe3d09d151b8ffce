"""Where bytes live and how they move: backends, peers, stored blobs, transfers."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction

from callfs_site import offload
from callfs_site.errors import CallFSError, LockTimeout, ServiceUnavailable
from callfs_site.metrics import observe_backend_call
from filesystem.exceptions import (
    ChecksumMismatch,
    FileNotFound,
    NodeUnavailable,
)
from filesystem.models import Inode, InodeType
from filesystem.services.common import this_node
from filesystem.storage import (
    BackendUnavailable,
    ChecksumMismatchError,
    StorageBackend,
    UnknownBackend,
    get_backend,
)
from filesystem.storage.local import LocalStorage
from filesystem.storage.peer import PeerStorage, PeerUnavailable

__all__ = [
    "Blob",
    "BytesReplaced",
    "backend_call",
    "committing_blob",
    "copy_blob",
    "discard_after_commit",
    "discard_all_after_commit",
    "missing_bytes",
    "placement_for",
    "require_reachable",
    "store_blob",
    "store_of",
]

logger = logging.getLogger(__name__)

CHUNK = 1024 * 1024


def _blob_store(backend: str, node_id: str = "") -> StorageBackend:
    """Where a blob lives: a backend, or for local-disk bytes of another node, that node."""
    if backend == "localfs" and node_id and node_id != this_node():
        return PeerStorage(node_id)
    return _backend(backend)


def store_of(inode: Inode) -> StorageBackend:
    """The store that holds a file's bytes."""
    return _blob_store(inode.backend, inode.node_id)


def require_reachable(inode: Inode) -> None:
    """Before removing a file whose bytes live on another node, make sure that node answers,
    so its blob goes with the metadata instead of being stranded (API.md §11.2: 502)."""
    if inode.type == InodeType.FILE:
        store = store_of(inode)
        if isinstance(store, PeerStorage):
            with backend_call(inode.backend, "check"):
                store.check()


def discard_after_commit(backend_name: str, key: str, node_id: str = "") -> None:
    """Delete a blob once the metadata that referenced it is committed away."""
    discard_all_after_commit([(backend_name, key, node_id)])


def discard_all_after_commit(blobs: list[tuple[str, str, str]]) -> None:
    """Delete these blobs, (backend, key, node id) each, once the metadata that referenced them
    is committed away: after a recursive delete, tens of thousands. The caller's answer waits
    for them, so none is left behind a 204; this node's disk unlinks them on the offload
    threads, DISCARD_BATCH at a time, so the worker's other connections go on meanwhile."""
    blobs = [blob for blob in blobs if blob[1]]
    if blobs:
        transaction.on_commit(lambda: _discard(blobs))


DISCARD_BATCH = 1000


def _discard(blobs: list[tuple[str, str, str]]) -> None:
    here: dict[str, list[str]] = {}
    for backend_name, key, node_id in blobs:
        try:
            store = _blob_store(backend_name, node_id)
        except Exception:  # an unknown backend now: fsck finds the orphan
            logger.exception("could not delete blob %s from %s %s", key, backend_name, node_id)
            continue
        if isinstance(store, LocalStorage):
            here.setdefault(backend_name, []).append(key)
        else:  # S3 or a peer: network calls, on the event loop as every other one
            _discard_one(store, backend_name, key, node_id)
    for backend_name, keys in here.items():
        store = _backend(backend_name)
        for start in range(0, len(keys), DISCARD_BATCH):
            offload.run(_discard_batch, store, backend_name, keys[start:start + DISCARD_BATCH])


def _discard_batch(store: StorageBackend, backend_name: str, keys: list[str]) -> None:
    for key in keys:
        _discard_one(store, backend_name, key, "")


def _discard_one(store: StorageBackend, backend_name: str, key: str, node_id: str) -> None:
    try:
        store.delete(key)
    except Exception:  # an orphan blob is harmless and found by fsck; never fail the request
        logger.exception("could not delete blob %s from %s %s", key, backend_name, node_id)


class BytesReplaced(LockTimeout):
    """The bytes an inode named were gone when opened because the file was overwritten, moved
    to other storage or deleted since it was looked up (the old blob goes right after the
    commit). Readers look the path up again (`lookup.on_current_version`); escaping, it is a
    503: the file kept changing, try again."""

    default_detail = "the file changed while it was being read, try again"


def missing_bytes(inode: Inode) -> CallFSError:
    """What a missing blob means: replaced or deleted since `inode` was read (BytesReplaced),
    or lost while the metadata still names it (404, logged)."""
    if not Inode.objects.filter(pk=inode.pk, blob_key=inode.blob_key).exists():
        return BytesReplaced()
    logger.error("blob %s of %s is missing from %s %s", inode.blob_key, inode.path,
                 inode.backend, inode.node_id)
    return FileNotFound("the file's bytes are missing from storage")


@contextmanager
def backend_call(backend: str, operation: str) -> Iterator[None]:
    """Time a backend call and turn an unreachable backend into 503 SERVICE_UNAVAILABLE."""
    started = time.perf_counter()
    try:
        yield
    except PeerUnavailable as exc:
        logger.warning("peer unavailable during %s: %s", operation, exc)
        raise NodeUnavailable(str(exc)) from None
    except BackendUnavailable as exc:
        logger.warning("storage backend %s failed during %s: %s", backend, operation, exc)
        raise ServiceUnavailable(f"the {backend} storage backend is unavailable") from None
    finally:
        observe_backend_call(backend, operation, time.perf_counter() - started)


def _backend(name: str) -> StorageBackend:
    try:
        return get_backend(name)
    except UnknownBackend:
        raise ServiceUnavailable(f"the {name} storage backend is not configured on this node"
                                 ) from None


@dataclass(frozen=True)
class Blob:
    """Bytes already stored under a fresh key, waiting for their metadata."""

    backend: str
    key: str
    size: int
    sha256: str
    node_id: str = ""  # the node whose disk holds them (local-disk backend only)


def placement_for(backend: str | None = None, node_id: str | None = None) -> tuple[str, str]:
    """(backend, node) for new bytes: by default this node's CALLFS_DEFAULT_BACKEND."""
    backend = backend or settings.CALLFS.default_backend
    return backend, (node_id or this_node()) if backend == "localfs" else ""


def store_blob(chunks: Iterable[bytes], expected_sha256: str | None = None,
               placement: tuple[str, str] | None = None) -> Blob:
    """Write a stream under a fresh key where `placement` says (default: `placement_for()`)."""
    backend_name, node_id = placement or placement_for()
    store = _blob_store(backend_name, node_id)
    try:
        with backend_call(backend_name, "write"):
            key = store.new_upload_key()
            result = store.write(key, chunks, expected_sha256)
    except ChecksumMismatchError:
        raise ChecksumMismatch() from None
    return Blob(backend_name, key, result.size, result.sha256, node_id)


def copy_blob(inode: Inode, placement: tuple[str, str]) -> Blob:
    """Copy a file's bytes to `placement` under a fresh key: where they already are, the store
    copies by itself; to another backend or node the bytes stream through here in constant
    memory, and their sha256 is checked on arrival."""
    source = store_of(inode)
    if placement == (inode.backend, inode.node_id if inode.backend == "localfs" else ""):
        key = source.new_key()
        try:
            with backend_call(inode.backend, "copy"):
                source.copy(inode.blob_key, key)
        except FileNotFoundError:
            raise missing_bytes(inode) from None
        return Blob(inode.backend, key, inode.size, inode.sha256, placement[1])
    try:
        with backend_call(inode.backend, "open"):
            reader = source.open(inode.blob_key)
    except FileNotFoundError:
        raise missing_bytes(inode) from None
    with reader:
        return store_blob(iter(lambda: reader.read(CHUNK), b""), inode.sha256 or None, placement)


@contextmanager
def committing_blob(blob: Blob | None) -> Iterator[None]:
    """If the metadata commit fails, the freshly written blob is removed again."""
    try:
        yield
    except BaseException:
        if blob is None:
            raise
        _blob_store(blob.backend, blob.node_id).delete(blob.key)
        raise

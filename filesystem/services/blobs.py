"""Where bytes live and how they move: backends, peers, stored blobs, transfers."""

from __future__ import annotations

import logging
import queue
import random
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO, TypeVar

from django.conf import settings
from django.db import close_old_connections, transaction

from callfs_site import offload
from callfs_site.errors import CallFSError, LockTimeout, ServiceUnavailable
from callfs_site.metrics import REPLICA_WRITE_FAILURES, observe_backend_call
from cluster import peers
from cluster.models import Node
from filesystem.exceptions import (
    ChecksumMismatch,
    FileNotFound,
    NodeUnavailable,
)
from filesystem.models import CopyState, Inode, InodeType, PendingDiscard, Replica
from filesystem.services.common import IDS_PER_QUERY, this_node
from filesystem.storage import (
    BackendUnavailable,
    ChecksumMismatchError,
    StorageBackend,
    UnknownBackend,
    WriteResult,
    get_backend,
)
from filesystem.storage.local import LocalStorage
from filesystem.storage.peer import PeerStorage, PeerUnavailable

__all__ = [
    "Blob",
    "BytesReplaced",
    "backend_call",
    "TooFewNodes",
    "committing_blob",
    "copy_blob",
    "copy_nodes",
    "delete_blob",
    "discard_from",
    "discard_all_after_commit",
    "discard_copies_after_commit",
    "live_nodes",
    "missing_bytes",
    "node_store",
    "open_copy",
    "placement_for",
    "placement_for_overwrite",
    "read_copy",
    "record_copies",
    "replicate",
    "require_reachable",
    "store_blob",
    "store_of",
]

logger = logging.getLogger(__name__)
T = TypeVar("T")

CHUNK = 1024 * 1024


def _blob_store(backend: str, node_id: str = "") -> StorageBackend:
    """Where a blob lives: a backend, or for local-disk bytes of another node, that node."""
    if backend == "localfs" and node_id and node_id != this_node():
        return PeerStorage(node_id)
    return _backend(backend)


def node_store(node_id: str) -> StorageBackend:
    """A node's local disk: this node's own, or another's through its blob API."""
    return _blob_store("localfs", node_id or this_node())


def discard_from(node_id: str, key: str) -> None:
    """Delete a local-disk blob no metadata references any more from a node now, or, if the
    node cannot be reached, leave it for that node to delete when it is back."""
    _discard_one(node_store(node_id), "localfs", key, node_id)


def store_of(inode: Inode) -> StorageBackend:
    """The store that holds a file's bytes."""
    return _blob_store(inode.backend, inode.node_id)


def require_reachable(inode: Inode) -> None:
    """Before removing a file whose bytes live on another node, make sure that node answers,
    so its blob goes with the metadata instead of being stranded (API.md §11.2: 502). With
    replicas a node that is away deletes its copies when back (PendingDiscard)."""
    if inode.type == InodeType.FILE and settings.CALLFS.replicas == 1:
        store = store_of(inode)
        if isinstance(store, PeerStorage):
            with backend_call(inode.backend, "check"):
                store.check()


def record_copies(inode: Inode, blob: Blob) -> None:
    """In the transaction that points `inode` at `blob`: the rows of its further copies."""
    if blob.replicas:
        Replica.objects.bulk_create([
            Replica(inode_id=inode.pk, node_id=node, blob_key=blob.key, sha256=blob.sha256)
            for node in blob.replicas])


def discard_copies_after_commit(files: list) -> None:
    """In the transaction that deletes these files or replaces their bytes (Inodes, or rows
    with pk, backend, blob_key and node_id): every copy of their bytes goes after the commit,
    and their replica rows now."""
    blobs = [(entry.backend, entry.blob_key, entry.node_id) for entry in files]
    local = [entry.pk for entry in files if entry.backend == "localfs"]
    for start in range(0, len(local), IDS_PER_QUERY):
        replicas = Replica.objects.filter(inode_id__in=local[start:start + IDS_PER_QUERY])
        copies = list(replicas.values_list("node_id", "blob_key"))
        if copies:
            replicas.delete()
            blobs += [("localfs", key, node) for node, key in copies]
    discard_all_after_commit(blobs)



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
    except BackendUnavailable as exc:
        if not isinstance(store, PeerStorage):
            logger.exception("could not delete blob %s from %s", key, backend_name)
            return
        # The node is away: it deletes the blob itself when it is back (PendingDiscard), so its
        # old bytes cannot come back as a copy of anything.
        logger.warning("node %s is away (%s); it will delete blob %s when back", node_id, exc,
                       key)
        try:
            PendingDiscard.objects.get_or_create(node_id=node_id, blob_key=key)
        except Exception:  # the database too: fsck on that node finds the orphan
            logger.exception("could not record blob %s on node %s for deletion", key, node_id)
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
    node_id: str = ""  # the node whose disk holds them (local-disk backend only): the primary
    replicas: tuple[str, ...] = ()  # further nodes holding a verified copy (CALLFS_REPLICAS)


def placement_for(backend: str | None = None, node_id: str | None = None) -> tuple[str, str]:
    """(backend, node) for new bytes: by default this node's CALLFS_DEFAULT_BACKEND. For a
    local-disk file the node is its primary; `store_blob` adds the replicas."""
    backend = backend or settings.CALLFS.default_backend
    return backend, (node_id or this_node()) if backend == "localfs" else ""


def placement_for_overwrite(current: Inode) -> tuple[str, str]:
    """Where an overwrite of `current` puts its bytes: where the file is (upstream relays a PUT
    to the node holding the file), or with replicas on this node first and others beside it,
    since every copy is written anew anyway."""
    if current.backend == "localfs" and settings.CALLFS.replicas > 1:
        return placement_for("localfs")
    return placement_for(current.backend, current.node_id)


_LIVE_CACHE_SECONDS = 2.0
_live: tuple[float, list[tuple[str, bool, float]]] = (0.0, [])


def live_nodes(*, for_new_copies: bool = False) -> list[str]:
    """The nodes heartbeating now (cached for a few seconds per process), less those that just
    failed to answer (`peers.suspect`): reads try them before others. `for_new_copies`: less
    those being drained too, which take no new copies."""
    global _live
    now = time.monotonic()
    if now - _live[0] > _LIVE_CACHE_SECONDS:
        _live = (now, [(node, draining, heartbeat.timestamp()) for node, draining, heartbeat
                       in Node.objects.up().values_list("node_id", "draining", "last_heartbeat")])
    return [node for node, draining, heard_at in _live[1]
            if not peers.suspect(node, heard_at) and not (for_new_copies and draining)]


class TooFewNodes(ServiceUnavailable):
    """CALLFS_REPLICAS_STRICT: fewer live nodes than copies wanted."""


def _replica_targets(backend: str, primary: str, holding: Iterable[str] = ()) -> list[str]:
    """Nodes for a new blob's further copies: live ones other than the primary, those that
    already hold the bytes (`holding`, for a copy) first, the rest in random order, so copies
    spread. Fewer than wanted: what there is, or TooFewNodes when strict."""
    wanted = settings.CALLFS.replicas - 1
    if backend != "localfs" or wanted <= 0:
        return []
    others = [node for node in live_nodes(for_new_copies=True) if node != primary]
    random.shuffle(others)
    preferred = set(holding)
    others.sort(key=lambda node: node not in preferred)
    if len(others) < wanted and settings.CALLFS.replicas_strict:
        raise TooFewNodes(f"{settings.CALLFS.replicas} copies wanted (CALLFS_REPLICAS_STRICT) "
                          f"but {len(others) + 1} node(s) are up")
    return others[:wanted]


_ABORT = object()


class _ReplicaWrite:
    """One further copy written to a peer while the bytes arrive: chunks go through a small
    queue to a thread (a greenlet in the gevent worker) streaming them to the peer's blob API,
    which stores them atomically or not at all. A peer that fails or stalls is dropped; the
    upload goes on."""

    QUEUED_CHUNKS = 4

    def __init__(self, node_id: str, key: str, expected_sha256: str | None):
        self.node_id = node_id
        self.key = key
        self.result: WriteResult | None = None
        self.failure: Exception | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=self.QUEUED_CHUNKS)
        self._thread = threading.Thread(target=self._run, args=(expected_sha256,), daemon=True,
                                        name=f"callfs-replica-{node_id}")
        try:
            peers.node_url(node_id)  # resolved here: the thread needs no database connection
        except peers.PeerUnavailable as exc:  # removed since it was picked
            self.failure = exc
        else:
            self._thread.start()

    def _chunks(self) -> Iterator[bytes]:
        while (chunk := self._queue.get()) is not None:
            if chunk is _ABORT:
                raise ConnectionAbortedError("the upload failed")  # the peer stores nothing
            yield chunk

    def _run(self, expected_sha256: str | None) -> None:
        try:
            self.result = PeerStorage(self.node_id).write(self.key, self._chunks(),
                                                          expected_sha256)
        except Exception as exc:
            self.failure = exc
        finally:
            close_old_connections()

    def _put(self, item: object) -> None:
        deadline = time.monotonic() + peers.READ_TIMEOUT
        while self.failure is None and self._thread.is_alive():
            try:
                self._queue.put(item, timeout=0.5)
                return
            except queue.Full:
                if time.monotonic() > deadline:
                    self.failure = TimeoutError(f"node {self.node_id!r} stopped reading")
                    return

    def send(self, chunk: bytes) -> None:
        if self.failure is None:
            self._put(chunk)

    def finish(self, sha256: str) -> bool:
        """The peer's copy is complete and has these bytes (else it is dropped, and deleted)."""
        self._put(None)
        if self._thread.ident is not None:
            self._thread.join(peers.READ_TIMEOUT)
        if self.failure is None and self.result is not None and self.result.sha256 == sha256:
            return True
        REPLICA_WRITE_FAILURES.inc()
        logger.warning("copy of blob %s to node %s failed: %s", self.key, self.node_id,
                       self.failure or (self.result and "its sha256 differs") or "no answer")
        discard_from(self.node_id, self.key)
        return False

    def abort(self) -> None:
        self._put(_ABORT)
        if self._thread.ident is not None:
            self._thread.join(peers.READ_TIMEOUT)
        if self.result is not None:  # stored before the upload failed: removed again
            discard_from(self.node_id, self.key)


def _teed(chunks: Iterable[bytes], replicas: list[_ReplicaWrite]) -> Iterator[bytes]:
    for chunk in chunks:
        for replica in replicas:
            replica.send(chunk)
        yield chunk


def store_blob(chunks: Iterable[bytes], expected_sha256: str | None = None,
               placement: tuple[str, str] | None = None) -> Blob:
    """Write a stream under a fresh key where `placement` says (default: `placement_for()`),
    and on local disk with CALLFS_REPLICAS > 1 to further nodes at the same time: each copy is
    verified by its sha256; one that fails is dropped (the file is then under-replicated)."""
    backend_name, node_id = placement or placement_for()
    store = _blob_store(backend_name, node_id)
    targets = _replica_targets(backend_name, node_id)
    try:
        with backend_call(backend_name, "write"):
            key = store.new_upload_key()
            if not targets:
                result = store.write(key, chunks, expected_sha256)
                return Blob(backend_name, key, result.size, result.sha256, node_id)
            replicas = [_ReplicaWrite(node, key, expected_sha256) for node in targets]
            try:
                result = store.write(key, _teed(chunks, replicas), expected_sha256)
            except BaseException:
                for replica in replicas:
                    replica.abort()
                raise
            copied = tuple(r.node_id for r in replicas if r.finish(result.sha256))
    except ChecksumMismatchError:
        raise ChecksumMismatch() from None
    blob = Blob(backend_name, key, result.size, result.sha256, node_id, copied)
    _require_enough_copies(blob)
    return blob


def _require_enough_copies(blob: Blob) -> None:
    if settings.CALLFS.replicas_strict and 1 + len(blob.replicas) < settings.CALLFS.replicas:
        delete_blob(blob)
        raise TooFewNodes(f"only {1 + len(blob.replicas)} of {settings.CALLFS.replicas} copies "
                          "could be written (CALLFS_REPLICAS_STRICT)")


def copy_nodes(inode: Inode) -> list[str]:
    """The nodes holding a good copy of a local-disk file's current bytes: its primary first,
    then its replicas (one query; none for files elsewhere)."""
    if inode.backend != "localfs" or inode.type != InodeType.FILE:
        return []
    replicas = Replica.objects.filter(inode_id=inode.pk, blob_key=inode.blob_key,
                                      state=CopyState.OK).values_list("node_id", flat=True)
    return [inode.node_id, *(node for node in replicas if node != inode.node_id)]


def replicate(backend: str, key: str, sha256: str, source_nodes: list[str], target: str) -> bool:
    """Copy blob `key` onto node `target` from one of `source_nodes` (in that order): the
    target copies it by itself when it holds it, else the bytes stream from a source to it,
    their sha256 checked on arrival. False if no source could give them."""
    target_store = _blob_store(backend, target)
    for source in source_nodes:
        if source == target:
            return True
        try:
            with backend_call(backend, "copy"):
                with _blob_store(backend, source).open(key) as reader:
                    target_store.write(key, iter(lambda: reader.read(CHUNK), b""), sha256)
            return True
        except (FileNotFoundError, ChecksumMismatchError, CallFSError) as exc:
            logger.warning("could not copy blob %s from node %s to node %s: %s", key, source,
                           target, exc)
    return False


def copy_blob(inode: Inode, placement: tuple[str, str]) -> Blob:
    """Copy a file's bytes to `placement` under a fresh key: where they already are, the store
    copies by itself; to another backend or node the bytes stream through here in constant
    memory, and their sha256 is checked on arrival. With replicas, each further copy is made
    by a node holding the bytes, or streamed to it from the new primary."""
    source = store_of(inode)
    if placement == (inode.backend, inode.node_id if inode.backend == "localfs" else ""):
        key = source.new_key()
        try:
            with backend_call(inode.backend, "copy"):
                source.copy(inode.blob_key, key)
        except FileNotFoundError:
            raise missing_bytes(inode) from None
        blob = Blob(inode.backend, key, inode.size, inode.sha256, placement[1])
    else:
        try:
            with backend_call(inode.backend, "open"):
                reader = open_copy(inode)
        except FileNotFoundError:
            raise missing_bytes(inode) from None
        with reader:
            blob = store_blob(iter(lambda: reader.read(CHUNK), b""), inode.sha256 or None,
                              placement)
        if blob.replicas or blob.backend != "localfs" or settings.CALLFS.replicas < 2:
            return blob
    return _with_replicas(blob, holding=copy_nodes(inode), source_key=inode.blob_key)


def _with_replicas(blob: Blob, *, holding: list[str], source_key: str) -> Blob:
    """A blob made by copying on its primary, given its further copies: a node holding the
    source copies it by itself (`source_key` to the blob's key), others are sent the bytes."""
    copied = []
    for target in _replica_targets(blob.backend, blob.node_id, holding):
        store = _blob_store(blob.backend, target)
        try:
            if target in holding:
                with backend_call(blob.backend, "copy"):
                    store.copy(source_key, blob.key)
                copied.append(target)
            elif replicate(blob.backend, blob.key, blob.sha256, [blob.node_id], target):
                copied.append(target)
        except (FileNotFoundError, CallFSError) as exc:
            REPLICA_WRITE_FAILURES.inc()
            logger.warning("copy of blob %s to node %s failed: %s", blob.key, target, exc)
    blob = Blob(blob.backend, blob.key, blob.size, blob.sha256, blob.node_id, tuple(copied))
    _require_enough_copies(blob)
    return blob


def open_copy(inode: Inode, start: int = 0, length: int | None = None) -> BinaryIO:
    """Open a file's bytes from a good copy: the primary if this node holds it, else a copy on
    this node, then copies on live peers, then on silent ones. A copy that is missing or whose
    node fails costs one try; the first failure is raised when none is left."""
    return _from_a_copy(inode, lambda store: store.open(inode.blob_key, start, length))


def read_copy(inode: Inode, start: int, length: int) -> bytes:
    """`open_copy` for a small range read at once."""
    return _from_a_copy(inode, lambda store: store.read(inode.blob_key, start, length))


def _from_a_copy(inode: Inode, attempt: Callable[[StorageBackend], T]) -> T:
    if inode.backend != "localfs" or inode.node_id == this_node():
        try:
            return attempt(store_of(inode))  # nothing looked up on the usual path
        except (FileNotFoundError, BackendUnavailable):
            if inode.backend != "localfs":
                raise
            nodes = copy_nodes(inode)[1:]
            if not nodes:
                raise
            first_failure = sys.exc_info()[1]
    else:
        nodes = copy_nodes(inode)
        first_failure = None
    live = set(live_nodes())
    here = this_node()
    nodes.sort(key=lambda node: (node != here, node not in live))
    for node in nodes:
        try:
            return attempt(_blob_store("localfs", node))
        except (FileNotFoundError, BackendUnavailable) as exc:
            logger.warning("copy of %s on node %s unusable: %s", inode.path, node, exc)
            first_failure = first_failure or exc
    raise first_failure or FileNotFoundError(inode.blob_key)


def delete_blob(blob: Blob) -> None:
    """Remove a blob that no metadata references (a failed commit): every copy of it."""
    _blob_store(blob.backend, blob.node_id).delete(blob.key)
    for node in blob.replicas:
        _discard_one(_blob_store(blob.backend, node), blob.backend, blob.key, node)


@contextmanager
def committing_blob(blob: Blob | None) -> Iterator[None]:
    """If the metadata commit fails, the freshly written blob is removed again."""
    try:
        yield
    except BaseException:
        if blob is None:
            raise
        delete_blob(blob)
        raise

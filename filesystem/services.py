"""Filesystem operations: the only code that mixes metadata, bytes and locks.

Each verb authorises through `filesystem.access`, writes bytes before metadata, and commits the
metadata under `distributed_lock` in one transaction, with the rows it changes (and the directory
it inserts into) locked FOR UPDATE, so concurrent creates, moves and deletes cannot tear the tree.
Blobs replaced or deleted are removed only after the transaction commits.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import BinaryIO
from urllib.parse import quote

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import IntegrityError, transaction
from django.utils import timezone

from callfs_site.errors import ServiceUnavailable
from callfs_site.metrics import record_file_operation, timed_backend_call
from cluster.exceptions import LockTimeout
from cluster.locks import distributed_lock
from cluster.models import Node
from filesystem import access, paths
from filesystem.access import User
from filesystem.exceptions import (
    BadRequest,
    ChecksumMismatch,
    DirectoryNotEmpty,
    FileAlreadyExists,
    FileNotFound,
    InvalidRequest,
    IsADirectory,
    NodeUnavailable,
    NotADirectory,
    PermissionDenied,
)
from filesystem.models import Inode, InodeType
from filesystem.storage import (
    BackendUnavailable,
    ChecksumMismatchError,
    StorageBackend,
    UnknownBackend,
    available_backends,
    get_backend,
)
from filesystem.storage.peer import PeerStorage, PeerUnavailable

logger = logging.getLogger(__name__)

Precondition = Callable[[Inode | None], None]

# Listing rows are read as tuples: building 10,000 entries must not cost 10,000 model instances.
_INFO_COLUMNS = ("id", "parent_id", "owner_id", "group_id",
                 "name", "path", "type", "size", "mode", "owner__username", "group__name", "mtime")
_INFO_START = 4  # FileInfo fields start here; the ids before them decide permissions
_ID, _PARENT, _OWNER, _GROUP, _TYPE, _MODE = 0, 1, 2, 3, 6, 8
MAX_LISTING_DEPTH = 1000
DEFAULT_LISTING_DEPTH = 100
_RETRIES = 5
CHUNK = 1024 * 1024


def format_time(moment: datetime) -> str:
    """RFC 3339 with seconds precision in UTC, as upstream's X-CallFS-MTime."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _info(name, path, kind, size, mode, owner, group, mtime) -> dict:
    return {"name": name, "path": path, "type": kind, "size": size, "mode": f"{mode:04o}",
            "owner": owner or "", "group": group or "", "mtime": format_time(mtime)}


def file_info(inode: Inode) -> dict:
    """The FileInfo object of API.md §5.2 (plus `group`, §16.2)."""
    return _info(inode.name or "/", inode.path, inode.type, inode.size, inode.mode,
                 inode.owner_name, inode.group_name, inode.mtime)


def _this_node() -> str:
    return settings.CALLFS.node_id


def _new_mode(kind: str) -> int:
    base = 0o777 if kind == InodeType.DIRECTORY else 0o666
    return base & ~settings.CALLFS.umask


def _blob_store(backend: str, node_id: str = "") -> StorageBackend:
    """Where a blob lives: a backend, or for local-disk bytes of another node, that node."""
    if backend == "localfs" and node_id and node_id != _this_node():
        return PeerStorage(node_id)
    return _backend(backend)


def _home(inode: Inode) -> StorageBackend:
    return _blob_store(inode.backend, inode.node_id)


def _require_reachable(inode: Inode) -> None:
    """Before removing a file whose bytes live on another node, make sure that node answers,
    so its blob goes with the metadata instead of being stranded (API.md §11.2: 502)."""
    if inode.type == InodeType.FILE:
        store = _home(inode)
        if isinstance(store, PeerStorage):
            with _backend_call(inode.backend, "check"):
                store.check()


def _discard_after_commit(backend_name: str, key: str, node_id: str = "") -> None:
    """Delete a blob once the metadata that referenced it is committed away."""
    if not key:
        return

    def discard() -> None:
        try:
            _blob_store(backend_name, node_id).delete(key)
        except Exception:  # an orphan blob is harmless and found by fsck; never fail the request
            logger.exception("could not delete blob %s from %s %s", key, backend_name, node_id)

    transaction.on_commit(discard)


@contextmanager
def _backend_call(backend: str, operation: str) -> Iterator[None]:
    """Time a backend call and turn an unreachable backend into 503 SERVICE_UNAVAILABLE."""
    try:
        with timed_backend_call(backend, operation):
            yield
    except PeerUnavailable as exc:
        logger.warning("peer unavailable during %s: %s", operation, exc)
        raise NodeUnavailable(str(exc)) from None
    except BackendUnavailable as exc:
        logger.warning("storage backend %s failed during %s: %s", backend, operation, exc)
        raise ServiceUnavailable(f"the {backend} storage backend is unavailable") from None


def _backend(name: str) -> StorageBackend:
    try:
        return get_backend(name)
    except UnknownBackend:
        raise ServiceUnavailable(f"the {name} storage backend is not configured on this node"
                                 ) from None


def _lock_current(path: str, precondition: Precondition | None) -> Inode:
    """Inside a transaction: the entry at `path` locked FOR UPDATE, its preconditions checked
    again now that nobody can change it (they were checked before any byte moved, too)."""
    current = Inode.objects.select_for_update().at(path).first()
    if current is None:
        raise FileNotFound()
    if precondition:
        precondition(current)
    return current


# --- lookups ------------------------------------------------------------------------------------

def resolve(path: str) -> Inode | None:
    """The inode at a canonical path with its owner and group, or None."""
    return Inode.objects.with_names().at(path).first()


def _walk(user: User, path: str) -> tuple[Inode | None, Inode | None]:
    """(the entry at `path` or None, the deepest existing ancestor) in one query for the entry
    and all its ancestors, checking `x` on each directory passed through - so a directory the
    user cannot traverse answers 403 and leaks nothing about what lies below it."""
    chain = paths.ancestors(path)
    found = {i.path: i for i in Inode.objects.with_names_at([*chain, path])}
    deepest: Inode | None = None
    for ancestor in chain:
        node = found.get(ancestor)
        if node is None or not node.is_dir:
            return None, node or deepest
        access.require_traverse(user, [node])
        deepest = node
    return found.get(path), deepest


def stat(user: User, path: str) -> Inode:
    """The inode at `path` if the user may reach it (`x` on every ancestor); 404 if missing."""
    inode, _ = _walk(user, path)
    if inode is None:
        raise FileNotFound()
    return inode


def _check_can_create(user: User, nearest: Inode | None) -> None:
    """Before reading an upload: may the user create an entry below `nearest`, the deepest
    existing ancestor of the new path (missing directories in between are made by the user)?"""
    if nearest is None:
        raise FileNotFound("the root directory is missing; run 'manage.py migrate'")
    if not nearest.is_dir:
        raise NotADirectory(f"{nearest.path} is not a directory")
    access.require_create_in(user, nearest)


@dataclass(frozen=True)
class Listing:
    path: str
    recursive: bool
    max_depth: int
    items: list[dict]


def list_children(user: User, directory: Inode) -> list[dict]:
    """The immediate children of a directory as FileInfo objects: files first, then
    directories, each by name (upstream's SQL order). Needs `r` on the directory."""
    access.require_read(user, directory)
    rows = (Inode.objects.filter(parent_id=directory.pk)
            .order_by("-type", "name").values_list(*_INFO_COLUMNS))
    record_file_operation("list", directory.backend)
    return [_info(*row[_INFO_START:]) for row in rows]


def list_directory(user: User, path: str, *, recursive: bool = False,
                   max_depth: int | None = None) -> Listing:
    """The listing of /v1/directories (§7.10). Recursive listings fetch one query per level and
    put each directory's children before its subdirectories' subtrees; `max_depth` 0 means
    unlimited, N reaches N+1 levels below the directory."""
    directory = stat(user, path)
    if not directory.is_dir:
        raise NotADirectory(f"{path} is not a directory")
    if not recursive:
        return Listing(directory.path, False, 0, list_children(user, directory))
    access.require_read(user, directory)

    depth = DEFAULT_LISTING_DEPTH if max_depth is None else min(max_depth, MAX_LISTING_DEPTH)
    levels = MAX_LISTING_DEPTH + 1 if depth == 0 else depth + 1
    if not access.allows(user, directory, access.EXECUTE):
        levels = 1  # its names are readable, but nothing below it is reachable
    children: dict[int, list[tuple]] = {}
    frontier = [directory.pk]
    for _ in range(levels):
        if not frontier:
            break
        next_frontier = []
        rows = (Inode.objects.filter(parent_id__in=frontier)
                .order_by("parent_id", "-type", "name").values_list(*_INFO_COLUMNS))
        for row in rows:
            children.setdefault(row[_PARENT], []).append(row)
            # Only into directories the user may read and traverse: say nothing of the rest.
            if row[_TYPE] == InodeType.DIRECTORY and access.allows_raw(
                    user, row[_OWNER], row[_GROUP], row[_MODE], access.READ | access.EXECUTE):
                next_frontier.append(row[_ID])
        frontier = next_frontier

    # Each directory's children come together, then each child directory's subtree in order.
    items = [_info(*row[_INFO_START:]) for row in children.get(directory.pk, ())]
    pending = [row[_ID] for row in reversed(children.get(directory.pk, ()))
               if row[_TYPE] == InodeType.DIRECTORY]
    while pending:
        rows = children.get(pending.pop(), ())
        items.extend(_info(*row[_INFO_START:]) for row in rows)
        pending.extend(row[_ID] for row in reversed(rows) if row[_TYPE] == InodeType.DIRECTORY)
    record_file_operation("list", directory.backend)
    return Listing(directory.path, True, depth, items)


def open_file(user: User, inode: Inode, start: int = 0, length: int | None = None) -> BinaryIO:
    """Open a file's bytes for streaming, after every check (nothing can become JSON later)."""
    access.require_read(user, inode)
    if inode.is_dir:
        raise IsADirectory(f"{inode.path} is a directory")
    try:
        with _backend_call(inode.backend, "open"):
            reader = _home(inode).open(inode.blob_key, start, length)
    except FileNotFoundError:
        logger.error("blob %s of %s is missing from %s", inode.blob_key, inode.path,
                     inode.backend)
        raise FileNotFound("the file's bytes are missing from storage") from None
    record_file_operation("read", inode.backend)
    return reader


# --- creating -----------------------------------------------------------------------------------

def _locked_parent(user: User, path: str, owner_id: int | None = None,
                   create_missing: bool = True) -> Inode:
    """Inside a transaction: the directory that will hold `path`, locked FOR UPDATE, with any
    missing ancestors created first (owned by `owner_id`, default the user)."""
    chain = paths.ancestors(path)
    # The common case first: the parent exists. One locking query, no chain walk.
    parent = Inode.objects.select_for_update().at(chain[-1]).first()
    if parent is not None:
        if not parent.is_dir:
            raise NotADirectory(f"{parent.path} is not a directory")
        return parent
    for _ in range(_RETRIES):
        found = {i.path: i for i in Inode.objects.at_any(chain)}
        index = max(i for i, p in enumerate(chain) if p in found)
        parent = (Inode.objects.select_for_update()
                  .filter(pk=found[chain[index]].pk, path_hash=paths.path_key(chain[index]))
                  .first())
        if parent is None:
            continue  # moved or deleted while we looked: look again
        if index + 1 < len(chain) and Inode.objects.at(chain[index + 1]).exists():
            continue  # someone created the next level while we waited for the lock
        if not parent.is_dir:
            raise NotADirectory(f"{parent.path} is not a directory")
        for missing in chain[index + 1:]:
            access.require_create_in(user, parent)
            if not create_missing:
                raise BadRequest(f'destination parent "{paths.parent_of(path)}" does not exist')
            parent = Inode.objects.create(
                parent=parent, name=paths.name_of(missing), path=missing,
                type=InodeType.DIRECTORY, owner_id=owner_id or user.pk,
                group_id=parent.group_id, mode=_new_mode(InodeType.DIRECTORY),
                backend=parent.backend if parent.parent_id else settings.CALLFS.default_backend,
                node_id=_this_node(),
            )
        return parent
    raise FileAlreadyExists("the directory changed while creating the path, try again")


def _conflict(existing: Inode, wants_directory: bool) -> FileAlreadyExists:
    """The 409 for a create onto an existing entry; §11.3's object when it lives elsewhere."""
    if existing.node_id and existing.node_id != _this_node() and existing.backend == "localfs":
        if existing.is_dir:
            suggestion = ("Directory already exists on another server. Use GET to access it."
                          if wants_directory else
                          "Path exists as directory on another server, cannot create file")
        else:
            suggestion = ("Path exists as file on another server, cannot create directory"
                          if wants_directory else
                          "File already exists on another server. Use PUT to update it.")
        conflict = {
            "error": "Resource exists on another server", "existing_path": existing.path,
            "instance_id": existing.node_id, "backend_type": existing.backend,
            "suggestion": suggestion,
        }
        peer = Node.objects.filter(node_id=existing.node_id).values_list("url", flat=True).first()
        if peer and not existing.is_dir and not wants_directory:
            conflict["update_url"] = f"{peer.rstrip('/')}/v1/files{quote(existing.path)}"
        return FileAlreadyExists("Resource exists on another server", extra=conflict)
    if existing.is_dir and not wants_directory:
        return FileAlreadyExists(f"{existing.path} exists and is a directory")
    if not existing.is_dir and wants_directory:
        return FileAlreadyExists(f"{existing.path} exists and is a file")
    return FileAlreadyExists()


def make_directory(user: User, path: str) -> tuple[Inode, bool]:
    """mkdir -p: create `path` and missing parents; an existing directory is fine (False)."""
    existing, nearest = _walk(user, path)
    if existing is not None:
        if existing.is_dir:
            return existing, False
        raise _conflict(existing, wants_directory=True)
    _check_can_create(user, nearest)
    with distributed_lock(path), transaction.atomic():
        parent = _locked_parent(user, path)
        existing = Inode.objects.at(path).first()
        if existing is not None:
            if existing.is_dir:
                return existing, False
            raise _conflict(existing, wants_directory=True)
        access.require_create_in(user, parent)
        inode = Inode.objects.create(
            parent=parent, name=paths.name_of(path), path=path, type=InodeType.DIRECTORY,
            owner_id=user.pk, group_id=parent.group_id, mode=_new_mode(InodeType.DIRECTORY),
            backend=settings.CALLFS.default_backend, node_id=_this_node(),
        )
    record_file_operation("mkdir", inode.backend)
    return inode, True


@dataclass(frozen=True)
class Blob:
    """Bytes already stored under a fresh key, waiting for their metadata."""

    backend: str
    key: str
    size: int
    sha256: str
    node_id: str = ""  # the node whose disk holds them (local-disk backend only)


def _placement(backend: str | None = None, node_id: str | None = None) -> tuple[str, str]:
    """(backend, node) for new bytes: by default this node's CALLFS_DEFAULT_BACKEND."""
    backend = backend or settings.CALLFS.default_backend
    return backend, (node_id or _this_node()) if backend == "localfs" else ""


def _store(chunks: Iterable[bytes], expected_sha256: str | None = None,
           placement: tuple[str, str] | None = None) -> Blob:
    """Write a stream under a fresh key where `placement` says (default: see _placement)."""
    backend_name, node_id = placement or _placement()
    store = _blob_store(backend_name, node_id)
    key = store.new_key()
    try:
        with _backend_call(backend_name, "write"):
            result = store.write(key, chunks, expected_sha256)
    except ChecksumMismatchError:
        raise ChecksumMismatch() from None
    return Blob(backend_name, key, result.size, result.sha256, node_id)


def _transfer(inode: Inode, placement: tuple[str, str]) -> Blob:
    """Copy a file's bytes to `placement` under a fresh key: where they already are, the store
    copies by itself; to another backend or node the bytes stream through here in constant
    memory, and their sha256 is checked on arrival."""
    source = _home(inode)
    if placement == (inode.backend, inode.node_id if inode.backend == "localfs" else ""):
        key = source.new_key()
        try:
            with _backend_call(inode.backend, "copy"):
                source.copy(inode.blob_key, key)
        except FileNotFoundError:
            raise FileNotFound(f"the bytes of {inode.path} are missing from storage") from None
        return Blob(inode.backend, key, inode.size, inode.sha256, placement[1])
    try:
        with _backend_call(inode.backend, "open"):
            reader = source.open(inode.blob_key)
    except FileNotFoundError:
        raise FileNotFound(f"the bytes of {inode.path} are missing from storage") from None
    with reader:
        return _store(iter(lambda: reader.read(CHUNK), b""), inode.sha256 or None, placement)


@contextmanager
def _committing_blob(blob: Blob | None) -> Iterator[None]:
    """If the metadata commit fails, the freshly written blob is removed again."""
    try:
        yield
    except BaseException:
        if blob is None:
            raise
        _blob_store(blob.backend, blob.node_id).delete(blob.key)
        raise


def _check_target(user: User, path: str, *, replace: bool,
                  precondition: Precondition | None) -> Inode | None:
    """Before any byte moves: may the user put a file at `path`? (Checked again at commit.)"""
    if path == paths.ROOT:
        raise IsADirectory("the root is a directory")
    existing, nearest = _walk(user, path)
    if precondition:
        precondition(existing)
    if existing is None:
        _check_can_create(user, nearest)
        return None
    if not replace:
        access.require_create_in(user, nearest)
        raise _conflict(existing, wants_directory=False)
    if existing.is_dir:
        raise IsADirectory(f"{path} is a directory")
    access.require_write(user, existing)
    return existing


def _commit(user: User, path: str, blob: Blob, *, replace: bool,
            precondition: Precondition | None) -> tuple[Inode, bool]:
    """Point `path` at a stored blob: create the file, or (with `replace`) swap its bytes in one
    transaction so readers see the old or the new content, never a mix."""
    with _committing_blob(blob), distributed_lock(path), transaction.atomic():
        current = Inode.objects.select_for_update().at(path).first()
        if precondition:
            precondition(current)
        if current is None:
            parent = _locked_parent(user, path)
            access.require_create_in(user, parent)
            now = timezone.now()
            try:
                with transaction.atomic():
                    inode = Inode.objects.create(
                        parent=parent, name=paths.name_of(path), path=path, type=InodeType.FILE,
                        size=blob.size, owner_id=user.pk, group_id=parent.group_id,
                        mode=_new_mode(InodeType.FILE), backend=blob.backend,
                        node_id=blob.node_id,
                        blob_key=blob.key, sha256=blob.sha256, ctime=now, mtime=now)
            except IntegrityError:
                raise FileAlreadyExists() from None
            record_file_operation("create", blob.backend)
            return inode, True
        if not replace:
            raise _conflict(current, wants_directory=False)
        if current.is_dir:
            raise IsADirectory(f"{path} is a directory")
        access.require_write(user, current)
        _discard_after_commit(current.backend, current.blob_key, current.node_id)
        now = timezone.now()
        current.size, current.sha256, current.mtime, current.ctime = \
            blob.size, blob.sha256, now, now
        current.backend, current.blob_key, current.node_id = blob.backend, blob.key, blob.node_id
        current.save(update_fields=["size", "sha256", "mtime", "ctime", "backend", "blob_key",
                                    "node_id"])
    record_file_operation("update", blob.backend)
    return resolve(path) or current, False


def create_file(user: User, path: str, chunks: Iterable[bytes], *,
                expected_sha256: str | None = None) -> Inode:
    """POST: create a new file (and missing parents); 409 if anything exists at `path`."""
    if path == paths.ROOT:
        raise FileAlreadyExists("the root directory exists")
    _check_target(user, path, replace=False, precondition=None)
    return _commit(user, path, _store(chunks, expected_sha256), replace=False,
                   precondition=None)[0]


def write_file(user: User, path: str, chunks: Iterable[bytes], *,
               expected_sha256: str | None = None,
               precondition: Precondition | None = None) -> tuple[Inode, bool]:
    """PUT: create or overwrite a file; concurrent writers end with exactly one writer's bytes.
    Returns (inode, created)."""
    existing = _check_target(user, path, replace=True, precondition=precondition)
    # An overwrite keeps the file where it is (its backend, and its node: upstream relays the
    # PUT to the owner); a new file goes to this node's default backend.
    placement = _placement(existing.backend, existing.node_id) if existing else _placement()
    return _commit(user, path, _store(chunks, expected_sha256, placement), replace=True,
                   precondition=precondition)


def copy_file(user: User, source: str, path: str, *, replace: bool,
              precondition: Precondition | None = None) -> tuple[Inode, bool]:
    """Server-side copy (X-CallFS-Copy-Source): the backend duplicates the blob, no byte passes
    through this process. Needs read on the source and create/overwrite rights at `path`."""
    original = stat(user, source)
    access.require_read(user, original)
    if original.is_dir:
        raise IsADirectory(f"{source} is a directory; only files can be copied")
    _check_target(user, path, replace=replace, precondition=precondition)
    blob = _transfer(original, _placement())
    record_file_operation("copy", blob.backend)
    return _commit(user, path, blob, replace=replace, precondition=precondition)


# --- deleting -----------------------------------------------------------------------------------

def _subtree(directory: Inode, *, lock: bool) -> list[list[Inode]]:
    """The descendants of a directory, level by level (children first)."""
    levels: list[list[Inode]] = []
    frontier = [directory.pk]
    while frontier:
        query = Inode.objects.filter(parent_id__in=frontier)
        if lock:
            query = query.select_for_update()
        level = list(query.order_by("pk"))
        if not level:
            break
        levels.append(level)
        frontier = [i.pk for i in level if i.is_dir]
    return levels


def delete(user: User, path: str, *, recursive: bool = False,
           precondition: Precondition | None = None) -> None:
    """Remove a file or an empty directory; with `recursive`, a whole subtree, all or nothing
    (every entry must be deletable by the user)."""
    inode, parent = _walk(user, path)
    if inode is None:
        raise FileNotFound()
    if precondition:
        precondition(inode)
    _refuse_root(user, inode)
    access.require_remove(user, inode, parent)
    _require_reachable(inode)
    with distributed_lock(path), transaction.atomic():
        current = _lock_current(path, precondition)
        doomed = [current]
        if current.is_dir:
            levels = _subtree(current, lock=True)
            if levels and not recursive:
                raise DirectoryNotEmpty(f"{path} is not empty")
            # rm -r, all or nothing: every directory must be listable, every entry removable.
            directories = {current.pk: current}
            for level in levels:
                for entry in level:
                    holder = directories[entry.parent_id]
                    if not access.can_descend(user, holder):
                        raise PermissionDenied(f"cannot list {holder.path}")
                    access.require_remove(user, entry, holder)
                    if entry.is_dir:
                        directories[entry.pk] = entry
            doomed += [entry for level in levels for entry in level]
        for node_id in {e.node_id for e in doomed if e.type == InodeType.FILE} - {_this_node()}:
            _require_reachable(next(e for e in doomed if e.node_id == node_id
                                    and e.type == InodeType.FILE))
        for entry in doomed:
            if entry.type == InodeType.FILE:
                _discard_after_commit(entry.backend, entry.blob_key, entry.node_id)
        # Deepest first: a directory row goes only after its children (the FK protects it).
        for level in reversed(_subtree_levels(doomed, current)):
            for start in range(0, len(level), 500):
                Inode.objects.filter(pk__in=level[start:start + 500]).delete()
    record_file_operation("delete", inode.backend)


def _refuse_root(user: User, inode: Inode) -> None:
    """The root can be neither deleted nor moved: 403 for users (it is root's), 400 for admins."""
    if inode.is_root:
        if not access.is_admin(user):
            raise PermissionDenied()
        raise BadRequest("the root directory cannot be deleted, moved or replaced")


def _subtree_levels(doomed: list[Inode], top: Inode) -> list[list[int]]:
    depth = {top.pk: 0}
    levels: list[list[int]] = [[top.pk]]
    for entry in doomed[1:]:
        level = depth[entry.parent_id] + 1
        depth[entry.pk] = level
        if len(levels) <= level:
            levels.append([])
        levels[level].append(entry.pk)
    return levels


# --- moving -------------------------------------------------------------------------------------

def move(user: User, source: str, destination: str, *, overwrite: bool = False,
         create_parents: bool = False, backend: str | None = None,
         instance: str | None = None, precondition: Precondition | None = None) -> Inode:
    """Rename or move a file or directory (with its subtree). Metadata-only: blobs are keyed
    by id, not path. Owner, mode and mtime are kept. With `backend` and/or `instance` a file's
    bytes also move (to S3, or another node's disk): bytes first, then metadata, so a failure
    leaves the source intact."""
    inode, parent = _walk(user, source)
    if inode is None:
        raise FileNotFound()
    if precondition:
        precondition(inode)
    _refuse_root(user, inode)
    access.require_remove(user, inode, parent)
    if destination == paths.ROOT:
        raise BadRequest("the root directory cannot be moved or replaced")
    placement = _relocation(inode, backend, instance)
    if destination == source:
        if placement is None:
            raise BadRequest("destination is the source")
        return _relocate(inode, placement, precondition)
    if paths.is_within(destination, source):
        raise BadRequest("destination is inside the source")
    if inode.is_dir and paths.parent_of(destination) != paths.parent_of(source):
        access.require_move_directory(user, inode)
    target, nearest = _walk(user, destination)
    if target is not None:
        if not overwrite:
            raise FileAlreadyExists(f"{destination} already exists")
        access.require_remove(user, target, nearest)
        _replaceable(inode, target)
    elif nearest is not None and nearest.path != paths.parent_of(destination) \
            and not create_parents:
        raise BadRequest(f'destination parent "{paths.parent_of(destination)}" does not exist')
    else:
        _check_can_create(user, nearest)

    blob = _transfer(inode, placement) if placement else None  # bytes first, then metadata
    with _committing_blob(blob), distributed_lock(source, destination), transaction.atomic():
        current = _lock_current(source, precondition)
        if blob is not None:
            _swap_blob(current, inode, blob)
        target = Inode.objects.select_for_update().at(destination).first()
        if target is not None:
            if not overwrite:
                raise FileAlreadyExists(f"{destination} already exists")
            _replaceable(current, target)
        parent = _locked_parent(user, destination, owner_id=current.owner_id,
                                create_missing=create_parents)
        access.require_create_in(user, parent)
        if target is not None:
            if target.type == InodeType.FILE:
                _discard_after_commit(target.backend, target.blob_key, target.node_id)
            target.delete()

        old_path = current.path
        current.parent, current.name, current.path = parent, paths.name_of(destination), \
            destination
        current.ctime = timezone.now()
        current.save(update_fields=["parent", "name", "path", "path_hash", "ctime", "backend",
                                    "blob_key", "node_id"])
        if current.is_dir:
            moved = [entry for level in _subtree(current, lock=True) for entry in level]
            for entry in moved:
                entry.path = paths.rebase(entry.path, old_path, destination)
                entry.path_hash = paths.path_key(entry.path)
            Inode.objects.bulk_update(moved, ["path", "path_hash"], batch_size=500)
    record_file_operation("move", inode.backend)
    return resolve(destination) or current


def _swap_blob(current: Inode, seen: Inode, blob: Blob) -> None:
    """Point a locked inode at relocated bytes; the old blob goes after commit. If the file was
    overwritten while its bytes were being copied, the copy is stale: refuse, the caller retries."""
    if current.blob_key != seen.blob_key:
        raise LockTimeout("the file changed while its bytes were being moved, try again")
    _discard_after_commit(current.backend, current.blob_key, current.node_id)
    current.backend, current.blob_key, current.node_id = blob.backend, blob.key, blob.node_id


def _relocation(inode: Inode, backend: str | None, instance: str | None
                ) -> tuple[str, str] | None:
    """Where PATCH `backend`/`instance` send a file's bytes, or None if they stay (§7.7 r. 13,
    17): unknown backends and nodes, and directories changing either, are 400."""
    if backend is None and instance is None:
        return None
    target_backend = backend or inode.backend
    if target_backend not in available_backends():
        raise BadRequest(f"unknown backend {target_backend!r} (this node has "
                         f"{', '.join(available_backends())})")
    if instance is not None:
        if target_backend != "localfs":
            raise BadRequest("instance applies to the localfs backend only")
        if instance != _this_node() and not Node.objects.filter(node_id=instance).exists():
            raise BadRequest(f"unknown instance {instance!r}")
    current = (inode.backend, inode.node_id if inode.backend == "localfs" else "")
    same_backend_node = inode.node_id if target_backend == inode.backend else None
    placement = _placement(target_backend, instance or same_backend_node)
    if placement == current:
        return None
    if inode.is_dir:
        raise BadRequest("a directory cannot change backend or instance; move its files")
    return placement


def _relocate(inode: Inode, placement: tuple[str, str],
              precondition: Precondition | None) -> Inode:
    """Move a file's bytes to another backend or node, keeping its path."""
    blob = _transfer(inode, placement)
    with _committing_blob(blob), distributed_lock(inode.path), transaction.atomic():
        current = _lock_current(inode.path, precondition)
        _swap_blob(current, inode, blob)
        current.ctime = timezone.now()
        current.save(update_fields=["backend", "blob_key", "node_id", "ctime"])
    record_file_operation("relocate", blob.backend)
    return resolve(inode.path) or current


def _replaceable(source: Inode, target: Inode) -> None:
    """Can `source` replace the existing `target` (§7.7 row 16)? Types must match and a
    directory must be empty; the caller checked the right to remove `target` (§16.1 item 8)."""
    if target.is_dir and not source.is_dir:
        raise IsADirectory(f"{target.path} is a directory")
    if source.is_dir and not target.is_dir:
        raise NotADirectory(f"{target.path} is not a directory")
    if target.is_dir and Inode.objects.filter(parent_id=target.pk).exists():
        raise DirectoryNotEmpty(f"{target.path} is not empty")


# --- metadata -----------------------------------------------------------------------------------

def change_metadata(user: User, path: str, *, mode: int | None = None,
                    group: str | None = None, owner: str | None = None,
                    precondition: Precondition | None = None) -> Inode:
    """chmod / chgrp / chown (§16.2): mode by the owner, group by the owner to one of their own
    groups, owner by superusers only; any of them by superusers."""
    inode = stat(user, path)
    if precondition:
        precondition(inode)
    changes: dict[str, object] = {}
    if mode is not None:
        access.require_chmod(user, inode)
        changes["mode"] = mode
    if group is not None:
        group_row = Group.objects.filter(name=group).first()
        if group_row is None:
            raise InvalidRequest(f"no group named {group!r}")
        access.require_chgrp(user, inode, group_row.pk)
        changes["group_id"] = group_row.pk
    if owner is not None:
        access.require_chown(user)
        owner_row = get_user_model().objects.filter(username=owner).first()
        if owner_row is None:
            raise InvalidRequest(f"no user named {owner!r}")
        changes["owner_id"] = owner_row.pk
    with distributed_lock(path), transaction.atomic():
        current = _lock_current(path, precondition)
        Inode.objects.filter(pk=current.pk).update(ctime=timezone.now(), **changes)
    record_file_operation("chmod", inode.backend)
    return resolve(path) or inode

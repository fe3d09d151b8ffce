"""Creating and overwriting: mkdir -p, POST, PUT and server-side copy."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import quote

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from callfs_site.locks import distributed_lock
from callfs_site.metrics import record_file_operation
from cluster.models import Node
from filesystem import access, paths
from filesystem.access import User
from filesystem.exceptions import (
    BadRequest,
    FileAlreadyExists,
    IsADirectory,
    NotADirectory,
)
from filesystem.models import Inode, InodeType
from filesystem.services.authorise import Check, authorise, require_create_below
from filesystem.services.blobs import (
    Blob,
    committing_blob,
    copy_blob,
    discard_copies_after_commit,
    placement_for,
    placement_for_overwrite,
    record_copies,
    store_blob,
)
from filesystem.services.common import Precondition, locks_rows, new_mode, this_node
from filesystem.services.lookup import on_current_version, stat

__all__ = [
    "SMALL_UPLOAD",
    "copy_file",
    "create_file",
    "locked_parent",
    "make_directory",
    "write_file",
]

_RETRIES = 5
# Up to this many bytes (by Content-Length) an upload is read into memory and stored before
# anything is looked up, and checked once, under the lock: without the lookup before storing
# a small PUT costs markedly fewer instructions (measured: BENCHMARKS.md). Larger bodies are
# checked first, so that a refused upload is refused before its bytes are read.
SMALL_UPLOAD = 64 * 1024

# What an upload or a mkdir goes on with: (the entry at the path or None, its deepest existing
# ancestor), as their checks give them.
_Found = tuple[Inode | None, Inode | None]


def locked_parent(user: User, path: str, nearest: Inode | None, *, owner_id: int | None = None,
                  create_missing: bool = True) -> Inode:
    """Inside a transaction, after `authorise(..., locked=True)` found `nearest` (the deepest
    existing ancestor of `path`): the directory that will hold `path`, locked FOR UPDATE, with
    any missing ancestors created first (owned by `owner_id`, default the user), or 400 without
    `create_missing`."""
    chain = paths.ancestors(path)
    # The common case first: the parent exists. SQLite's BEGIN locked it with the rest of the
    # database before the walk read it; with row locks it is locked now, by one query, and
    # only to create in it, so that overwrites in one directory do not queue on its row.
    if nearest is not None and nearest.path == chain[-1]:
        parent = nearest
        if locks_rows():
            parent = next(iter(Inode.objects.with_names_at([chain[-1]], for_update=True)), None)
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
            parent = Inode.objects.insert(Inode(
                parent=parent, name=paths.name_of(missing), path=missing,
                type=InodeType.DIRECTORY, owner_id=owner_id or user.pk,
                group_id=parent.group_id, mode=new_mode(InodeType.DIRECTORY),
                backend=parent.backend if parent.parent_id else settings.CALLFS.default_backend,
                node_id=this_node(),
            ))
        return parent
    raise FileAlreadyExists("the directory changed while creating the path, try again")


def _conflict(existing: Inode, wants_directory: bool) -> FileAlreadyExists:
    """The 409 for a create onto an existing entry; §11.3's object when it lives elsewhere."""
    if existing.node_id and existing.node_id != this_node() and existing.backend == "localfs":
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


def _making_directory(user: User) -> Check[_Found]:
    """The check of mkdir -p: an existing directory will do; a file there is a 409; else the
    user must be able to create below the deepest existing ancestor."""

    def check(existing: Inode | None, nearest: Inode | None) -> _Found:
        if existing is None:
            require_create_below(user, nearest)
        elif not existing.is_dir:
            raise _conflict(existing, wants_directory=True)
        return existing, nearest

    return check


def make_directory(user: User, path: str) -> tuple[Inode, bool]:
    """mkdir -p: create `path` and missing parents; an existing directory is fine (False)."""
    making = _making_directory(user)
    existing, _ = authorise(user, path, making)
    if existing is not None:
        return existing, False
    with distributed_lock(path), transaction.atomic():
        existing, nearest = authorise(user, path, making, locked=True)
        if existing is not None:
            return existing, False
        parent = locked_parent(user, path, nearest)
        access.require_create_in(user, parent)
        inode = _insert_new(Inode(
            parent=parent, name=paths.name_of(path), path=path, type=InodeType.DIRECTORY,
            owner_id=user.pk, group_id=parent.group_id, mode=new_mode(InodeType.DIRECTORY),
            backend=settings.CALLFS.default_backend, node_id=this_node(),
        ))
    record_file_operation("mkdir", inode.backend)
    return inode, True


def _putting(user: User, path: str, *, replace: bool,
             precondition: Precondition | None) -> Check[_Found]:
    """The check of putting a file at `path`: the precondition, then the right to create it, or
    with `replace` to overwrite the file there (without, what is there is a 409)."""

    def check(existing: Inode | None, nearest: Inode | None) -> _Found:
        if path == paths.ROOT:
            raise IsADirectory("the root is a directory")
        if precondition:
            precondition(existing)
        if existing is None:
            require_create_below(user, nearest)
        elif not replace:
            access.require_create_in(user, nearest)
            raise _conflict(existing, wants_directory=False)
        elif existing.is_dir:
            raise IsADirectory(f"{path} is a directory")
        else:
            access.require_write(user, existing)
        return existing, nearest

    return check


class _StoredElsewhere(Exception):
    """The file being overwritten keeps its bytes on another backend or node than the upload
    was stored on (see `_store_small_first`)."""


def _commit(user: User, path: str, blob: Blob, putting: Check[_Found], *,
            stored_first: bool = False) -> tuple[Inode, bool]:
    """Point `path` at a stored blob, `putting` checked again under the lock: create the file,
    or swap its bytes in one transaction so readers see the old or the new content, never a
    mix. `stored_first`: the blob went to this node's default placement before anything was
    looked up, which does not suit a file kept elsewhere (`_StoredElsewhere`)."""
    with committing_blob(blob), distributed_lock(path), transaction.atomic():
        current, nearest = authorise(user, path, putting, locked=True)
        if current is None:
            parent = locked_parent(user, path, nearest)
            access.require_create_in(user, parent)
            now = timezone.now()
            inode = _insert_new(Inode(
                parent=parent, name=paths.name_of(path), path=path, type=InodeType.FILE,
                size=blob.size, owner_id=user.pk, group_id=parent.group_id,
                mode=new_mode(InodeType.FILE), backend=blob.backend, node_id=blob.node_id,
                blob_key=blob.key, sha256=blob.sha256, ctime=now, mtime=now))
            record_copies(inode, blob)
            record_file_operation("create", blob.backend)
            return inode, True
        if stored_first and placement_for_overwrite(current) != (blob.backend, blob.node_id):
            raise _StoredElsewhere()
        discard_copies_after_commit([current])
        now = timezone.now()
        current.size, current.sha256, current.mtime, current.ctime = \
            blob.size, blob.sha256, now, now
        current.backend, current.blob_key, current.node_id = blob.backend, blob.key, blob.node_id
        Inode.objects.update_fields(current, ["size", "sha256", "mtime", "ctime", "backend",
                                              "blob_key", "node_id"])
        record_copies(current, blob)
    record_file_operation("update", blob.backend)
    return current, False


def _insert_new(inode: Inode) -> Inode:
    """Insert a new entry; losing a race to another node's insert of the same name is a 409
    (the failed statement aborts the transaction, which the caller's exception rolls back)."""
    try:
        return Inode.objects.insert(inode)
    except IntegrityError:
        raise FileAlreadyExists() from None


def _store_small_first(user: User, path: str, chunks: Iterable[bytes], length: int | None,
                       putting: Check[_Found], expected_sha256: str | None
                       ) -> tuple[tuple[Inode, bool] | None, Iterable[bytes]]:
    """An upload of at most SMALL_UPLOAD bytes by `length`, read into memory: stored at this
    node's default placement first, then checked and committed with one lookup under the lock,
    instead of a lookup before storing and another under the lock. Returns (the result, or None
    for the long way, taken by larger uploads and by an overwrite of a file that lives
    elsewhere, whose first copy is gone again; the body's chunks for it)."""
    if length is None or length > SMALL_UPLOAD:
        return None, chunks
    data = b"".join(chunks)
    try:
        blob = store_blob([data], expected_sha256)
    except Exception:
        # What the long way would have answered before reading the body comes first (a 403
        # before a checksum mismatch or a failing disk).
        authorise(user, path, putting)
        raise
    try:
        return _commit(user, path, blob, putting, stored_first=True), [data]
    except _StoredElsewhere:
        return None, [data]


def create_file(user: User, path: str, chunks: Iterable[bytes], *,
                expected_sha256: str | None = None, length: int | None = None) -> Inode:
    """POST: create a new file (and missing parents); 409 if anything exists at `path`.
    `length`: the body's announced size, if known (small bodies take a shorter way)."""
    if path == paths.ROOT:
        raise FileAlreadyExists("the root directory exists")
    putting = _putting(user, path, replace=False, precondition=None)
    created, chunks = _store_small_first(user, path, chunks, length, putting, expected_sha256)
    if created is not None:
        return created[0]
    authorise(user, path, putting)
    return _commit(user, path, store_blob(chunks, expected_sha256), putting)[0]


def write_file(user: User, path: str, chunks: Iterable[bytes], *,
               expected_sha256: str | None = None,
               precondition: Precondition | None = None,
               length: int | None = None) -> tuple[Inode, bool]:
    """PUT: create or overwrite a file; concurrent writers end with exactly one writer's bytes.
    Returns (inode, created). `length`: the body's announced size, if known."""
    putting = _putting(user, path, replace=True, precondition=precondition)
    written, chunks = _store_small_first(user, path, chunks, length, putting, expected_sha256)
    if written is not None:
        return written
    existing, _ = authorise(user, path, putting)
    # An overwrite keeps the file's backend and, with one copy, its node (upstream relays the
    # PUT to the owner; with replicas every copy is new anyway: see placement_for_overwrite);
    # a new file goes to this node's default backend.
    placement = placement_for_overwrite(existing) if existing else placement_for()
    return _commit(user, path, store_blob(chunks, expected_sha256, placement), putting)


def copy_file(user: User, source: str, path: str, *, replace: bool,
              precondition: Precondition | None = None) -> tuple[Inode, bool]:
    """Server-side copy (X-CallFS-Copy-Source): the backend duplicates the blob, no byte passes
    through this process. Needs read on the source and create/overwrite rights at `path`."""
    def look_up() -> Inode:
        original = stat(user, source, read=True)
        if original.is_dir:
            raise IsADirectory(f"{source} is a directory; only files can be copied")
        return original

    original = look_up()
    putting = _putting(user, path, replace=replace, precondition=precondition)
    authorise(user, path, putting)
    # The source overwritten as its bytes are opened: its new version is copied.
    blob = on_current_version(look_up, lambda inode: copy_blob(inode, placement_for()),
                              first=original)
    record_file_operation("copy", blob.backend)
    return _commit(user, path, blob, putting)

"""Changing the tree: delete (rm -r), move/rename/relocate, chmod/chgrp/chown."""

from __future__ import annotations

import functools
from typing import NamedTuple

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.utils import timezone

from callfs_site import offload
from callfs_site.errors import LockTimeout
from callfs_site.locks import distributed_lock
from callfs_site.metrics import record_file_operation
from cluster.models import Node
from filesystem import access, paths
from filesystem.access import User
from filesystem.exceptions import (
    BadRequest,
    DirectoryNotEmpty,
    FileAlreadyExists,
    FileNotFound,
    InvalidRequest,
    IsADirectory,
    NotADirectory,
    PermissionDenied,
)
from filesystem.models import Inode, InodeType
from filesystem.services.authorise import Check, authorise, require_create_below
from filesystem.services.blobs import (
    Blob,
    committing_blob,
    copy_blob,
    discard_copies_after_commit,
    placement_for,
    record_copies,
    require_reachable,
)
from filesystem.services.common import IDS_PER_QUERY, Precondition, this_node
from filesystem.services.create import locked_parent
from filesystem.services.lookup import resolve
from filesystem.storage import available_backends

__all__ = ["change_metadata", "delete", "move"]


class _SubtreeRow(NamedTuple):
    """What moving or removing an entry of a tree needs of it (see `_subtree`)."""

    pk: int
    parent_id: int
    path: str
    type: str
    owner_id: int
    group_id: int | None
    mode: int
    backend: str
    blob_key: str
    node_id: str


def _subtree(directory: Inode) -> list[list[_SubtreeRow]]:
    """A directory's descendants, level by level (children first), as rows of what moving and
    removing them needs; its subdirectories are locked FOR UPDATE (where rows lock) until the
    transaction ends. Whatever creates, moves or deletes an entry locks the directories above
    it, so the tree keeps exactly these entries meanwhile."""
    levels: list[list[_SubtreeRow]] = []
    frontier = [directory.pk]
    while frontier:
        level: list[_SubtreeRow] = []
        for start in range(0, len(frontier), IDS_PER_QUERY):
            children = Inode.objects.filter(parent_id__in=frontier[start:start + IDS_PER_QUERY])
            for query in (children.filter(type=InodeType.DIRECTORY).select_for_update(),
                          children.exclude(type=InodeType.DIRECTORY)):
                level += map(_SubtreeRow._make, query.values_list(*_SubtreeRow._fields))
                offload.take_turns()
        if not level:
            break
        levels.append(level)
        frontier = [entry.pk for entry in level if entry.type == InodeType.DIRECTORY]
    return levels


def _removable(user: User, precondition: Precondition | None) -> Check[Inode]:
    """The check of removing an entry from its directory (delete, or moving it away), giving
    the entry: 404 if missing, preconditions, never the root, `w`+`x` on the parent and the
    sticky rule."""

    def check(entry: Inode | None, parent: Inode | None) -> Inode:
        if entry is None:
            raise FileNotFound()
        if precondition:
            precondition(entry)
        _refuse_root(user, entry)
        access.require_remove(user, entry, parent)
        return entry

    return check


def delete(user: User, path: str, *, recursive: bool = False,
           precondition: Precondition | None = None) -> None:
    """Remove a file or an empty directory; with `recursive`, a whole subtree, all or nothing
    (every entry must be deletable by the user)."""
    removable = _removable(user, precondition)
    inode = authorise(user, path, removable)
    require_reachable(inode)
    with distributed_lock(path), transaction.atomic():
        current = authorise(user, path, removable, locked=True)
        levels: list[list[_SubtreeRow]] = []
        if current.is_dir and Inode.objects.filter(parent_id=current.pk).exists():
            if not recursive:
                raise DirectoryNotEmpty(f"{path} is not empty")
            levels = _subtree(current)
            _require_removable_tree(user, current, levels)
        files = [entry for level in [[current], *levels] for entry in level
                 if entry.type == InodeType.FILE]
        for node_id in {entry.node_id for entry in files} - {this_node()}:
            require_reachable(next(entry for entry in files if entry.node_id == node_id))
        discard_copies_after_commit(files)
        # Deepest first: a directory row goes only after its children (the FK protects it).
        for level in reversed([[current.pk], *([entry.pk for entry in level] for level in levels)]):
            for start in range(0, len(level), IDS_PER_QUERY):
                Inode.objects.filter(pk__in=level[start:start + IDS_PER_QUERY]).only("pk").delete()
                offload.take_turns()
    record_file_operation("delete", inode.backend)


def _require_removable_tree(user: User, top: Inode, levels: list[list[_SubtreeRow]]) -> None:
    """rm -r, all or nothing: every directory must be listable, every entry removable."""
    directories: dict[int, Inode | _SubtreeRow] = {top.pk: top}
    for level in levels:
        for entry in level:
            holder = directories[entry.parent_id]
            if not access.can_descend(user, holder):
                raise PermissionDenied(f"cannot list {holder.path}")
            access.require_remove(user, entry, holder)
            if entry.type == InodeType.DIRECTORY:
                directories[entry.pk] = entry


def _refuse_root(user: User, inode: Inode) -> None:
    """The root can be neither deleted nor moved: 403 for users (it is root's), 400 for admins."""
    if inode.is_root:
        if not access.is_admin(user):
            raise PermissionDenied()
        raise BadRequest("the root directory cannot be deleted, moved or replaced")


def move(user: User, source: str, destination: str, *, overwrite: bool = False,
         create_parents: bool = False, backend: str | None = None,
         instance: str | None = None, precondition: Precondition | None = None) -> Inode:
    """Rename or move a file or directory (with its subtree). Metadata-only: blobs are keyed
    by id, not path. Owner, mode and mtime are kept. With `backend` and/or `instance` a file's
    bytes also move (to S3, or another node's disk): bytes first, then metadata, so a failure
    leaves the source intact."""
    removable = _removable(user, precondition)
    inode = authorise(user, source, removable)
    if destination == paths.ROOT:
        raise BadRequest("the root directory cannot be moved or replaced")
    placement = _relocation(inode, backend, instance)
    if destination == source:
        if placement is None:
            raise BadRequest("destination is the source")
        return _relocate(user, inode, placement, removable)
    if paths.is_within(destination, source):
        raise BadRequest("destination is inside the source")
    placeable = functools.partial(_placeable, user, source=source, destination=destination,
                                  overwrite=overwrite, create_parents=create_parents)
    authorise(user, destination, placeable(inode))

    blob = copy_blob(inode, placement) if placement else None  # bytes first, then metadata
    with committing_blob(blob), distributed_lock(source, destination), transaction.atomic():
        current = authorise(user, source, removable, locked=True)
        target, nearest = authorise(user, destination, placeable(current), locked=True)
        if blob is not None:
            _swap_blob(current, inode, blob)
        parent = locked_parent(user, destination, nearest, owner_id=current.owner_id,
                               create_missing=create_parents)
        access.require_create_in(user, parent)
        if target is not None:
            if target.type == InodeType.FILE:
                discard_copies_after_commit([target])
            target.delete()

        old_path = current.path
        current.parent, current.name, current.path = parent, paths.name_of(destination), \
            destination
        current.ctime = timezone.now()
        current.save(update_fields=["parent", "name", "path", "path_hash", "ctime", "backend",
                                    "blob_key", "node_id"])
        if current.is_dir:
            descendants = [entry.pk for level in _subtree(current) for entry in level]
            for start in range(0, len(descendants), IDS_PER_QUERY):
                Inode.objects.filter(pk__in=descendants[start:start + IDS_PER_QUERY]) \
                    .rebase(old_path, destination)
                offload.take_turns()
    record_file_operation("move", inode.backend)
    return resolve(destination) or current


def _placeable(user: User, moved: Inode, source: str, destination: str, *, overwrite: bool,
               create_parents: bool) -> Check[tuple[Inode | None, Inode | None]]:
    """The check of putting `moved` (from `source`) at `destination`, giving (the entry it
    replaces or None, the deepest existing ancestor): a directory going to another parent needs
    `w` on itself; an existing destination needs `overwrite`, the right to remove it (§16.1
    item 8) and a matching type; a missing one needs its parent (or `create_parents`) and the
    right to create there."""

    def check(target: Inode | None, nearest: Inode | None) -> tuple[Inode | None, Inode | None]:
        if moved.is_dir and paths.parent_of(destination) != paths.parent_of(source):
            access.require_move_directory(user, moved)
        if target is not None:
            if not overwrite:
                raise FileAlreadyExists(f"{destination} already exists")
            access.require_remove(user, target, nearest)
            _replaceable(moved, target)
        elif nearest is not None and nearest.path != paths.parent_of(destination) \
                and not create_parents:
            raise BadRequest(f'destination parent "{paths.parent_of(destination)}" does not exist')
        else:
            require_create_below(user, nearest)
        return target, nearest

    return check


def _swap_blob(current: Inode, seen: Inode, blob: Blob) -> None:
    """Point a locked inode at relocated bytes; the old blob goes after commit. If the file was
    overwritten while its bytes were being copied, the copy is stale: refuse, the caller retries."""
    if current.blob_key != seen.blob_key:
        raise LockTimeout("the file changed while its bytes were being moved, try again")
    discard_copies_after_commit([current])
    current.backend, current.blob_key, current.node_id = blob.backend, blob.key, blob.node_id
    record_copies(current, blob)


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
        if instance != this_node() and not Node.objects.filter(node_id=instance).exists():
            raise BadRequest(f"unknown instance {instance!r}")
    current = (inode.backend, inode.node_id if inode.backend == "localfs" else "")
    same_backend_node = inode.node_id if target_backend == inode.backend else None
    placement = placement_for(target_backend, instance or same_backend_node)
    if placement == current:
        return None
    if inode.is_dir:
        raise BadRequest("a directory cannot change backend or instance; move its files")
    return placement


def _relocate(user: User, inode: Inode, placement: tuple[str, str],
              removable: Check[Inode]) -> Inode:
    """Move a file's bytes to another backend or node, keeping its path."""
    blob = copy_blob(inode, placement)
    with committing_blob(blob), distributed_lock(inode.path), transaction.atomic():
        current = authorise(user, inode.path, removable, locked=True)
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


def change_metadata(user: User, path: str, *, mode: int | None = None,
                    group: str | None = None, owner: str | None = None,
                    precondition: Precondition | None = None) -> Inode:
    """chmod / chgrp / chown (§16.2): mode by the owner, group by the owner to one of their own
    groups, owner by superusers only; any of them by superusers. A mode must suit the entry
    (`Inode.mode_problem`: no setuid, setgid on directories only), else 400."""
    allowed_changes = _metadata_changes(user, mode=mode, group=group, owner=owner,
                                        precondition=precondition)
    authorise(user, path, allowed_changes)
    with distributed_lock(path), transaction.atomic():
        current, changes = authorise(user, path, allowed_changes, locked=True)
        Inode.objects.filter(pk=current.pk).update(ctime=timezone.now(), **changes)
    record_file_operation("chmod", current.backend)
    return resolve(path) or current


def _metadata_changes(user: User, *, mode: int | None, group: str | None, owner: str | None,
                      precondition: Precondition | None
                      ) -> Check[tuple[Inode, dict[str, object]]]:
    """The check of a chmod/chgrp/chown, giving the entry and the columns to set on it."""

    def check(entry: Inode | None, _parent: Inode | None) -> tuple[Inode, dict[str, object]]:
        if entry is None:
            raise FileNotFound()
        if precondition:
            precondition(entry)
        changes: dict[str, object] = {}
        if mode is not None:
            access.require_chmod(user, entry)
            problem = Inode.mode_problem(entry.type, mode)
            if problem:
                raise InvalidRequest(f"mode: {problem}")
            changes["mode"] = mode
        if group is not None:
            group_id = Group.objects.filter(name=group).values_list("pk", flat=True).first()
            if group_id is None:
                raise InvalidRequest(f"no group named {group!r}")
            access.require_chgrp(user, entry, group_id)
            changes["group_id"] = group_id
        if owner is not None:
            access.require_chown(user)
            owner_id = (get_user_model().objects.filter(username=owner)
                        .values_list("pk", flat=True).first())
            if owner_id is None:
                raise InvalidRequest(f"no user named {owner!r}")
            changes["owner_id"] = owner_id
        return entry, changes

    return check

"""Resolving paths (one query, x on every ancestor), listings and opening files."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO

from callfs_site.metrics import record_file_operation
from filesystem import access, paths
from filesystem.access import User
from filesystem.exceptions import (
    FileNotFound,
    IsADirectory,
    NotADirectory,
)
from filesystem.models import Inode, InodeType, Row
from filesystem.services.blobs import _backend_call, _home
from filesystem.services.common import _info

logger = logging.getLogger(__name__)

# Listing rows are read as tuples: building 10,000 entries must not cost 10,000 model instances.
_INFO_COLUMNS = ("id", "parent_id", "owner_id", "group_id",
                 "name", "path", "type", "size", "mode", "owner__username", "group__name", "mtime")


_INFO_START = 4  # FileInfo fields start here; the ids before them decide permissions


_ID, _PARENT, _OWNER, _GROUP, _NAME, _PATH, _TYPE, _MODE = 0, 1, 2, 3, 4, 5, 6, 8


MAX_LISTING_DEPTH = 1000


DEFAULT_LISTING_DEPTH = 100


def resolve(path: str) -> Inode | None:
    """The inode at a canonical path with its owner and group, or None."""
    return Inode.objects.with_names().at(path).first()


def _walk_rows(user: User, path: str) -> tuple[tuple | None, tuple | None]:
    """(the row at `path` or None, the row of its deepest existing ancestor) from one query for
    the entry and all its ancestors, checking `x` on each directory passed through - so a
    directory the user cannot traverse answers 403 and leaks nothing about what lies below it."""
    chain = paths.ancestors(path)
    rows = {row[Row.PATH]: row for row in Inode.objects.rows_at([*chain, path])}
    deepest = None
    for ancestor in chain:
        row = rows.get(ancestor)
        if row is None or row[Row.TYPE] != InodeType.DIRECTORY:
            return None, row or deepest
        access.require_traverse_raw(user, row[Row.OWNER], row[Row.GROUP], row[Row.MODE])
        deepest = row
    return rows.get(path), deepest


def _walk(user: User, path: str) -> tuple[Inode | None, Inode | None]:
    """`_walk_rows` as models: (the entry or None, the deepest existing ancestor or None)."""
    entry, deepest = _walk_rows(user, path)
    return Inode.from_row(entry), Inode.from_row(deepest)


def stat(user: User, path: str, *, read: bool = False) -> Inode:
    """The inode at `path` if the user may reach it (`x` on every ancestor); 404 if missing.
    With `read`, also `r` on the entry itself (a file's bytes, a directory's names), so that a
    GET answers 403 before any conditional or Range is weighed against the content."""
    entry, _ = _walk_rows(user, path)
    if entry is None:
        raise FileNotFound()
    inode = Inode.from_row(entry)
    if read:
        access.require_read(user, inode)
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


def _entries(user: User, directory: Inode, rows) -> list[dict]:
    """The listing entries of a directory's child rows. Reading a directory gives its entries'
    names and types; their size, mode, owner, group and mtime need `x` on it, as a HEAD of each
    would (POSIX: `ls -l` in a directory with r but not x shows only names)."""
    if access.allows(user, directory, access.EXECUTE):
        return [_info(*row[_INFO_START:]) for row in rows]
    return [{"name": row[_NAME], "path": row[_PATH], "type": row[_TYPE]} for row in rows]


def list_children(user: User, directory: Inode) -> list[dict]:
    """The immediate children of a directory as FileInfo objects (names and types only without
    `x` on it): files first, then directories, each by name (upstream's SQL order). Needs `r`
    on the directory."""
    access.require_read(user, directory)
    rows = (Inode.objects.filter(parent_id=directory.pk)
            .order_by("-type", "name").values_list(*_INFO_COLUMNS))
    record_file_operation("list", directory.backend)
    return _entries(user, directory, rows)


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
    # Below the top, only directories with `x` were entered: their entries are full FileInfo.
    items = _entries(user, directory, children.get(directory.pk, ()))
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
    with _reading(user, inode, "open"):
        return _home(inode).open(inode.blob_key, start, length)


def read_file(user: User, inode: Inode, start: int, length: int) -> bytes:
    """A small range of a file's bytes at once, after the same checks as open_file."""
    with _reading(user, inode, "read"):
        data = _home(inode).read(inode.blob_key, start, length)
    if len(data) != length:
        raise RuntimeError(f"the blob of {inode.path} is {length - len(data)} bytes shorter "
                           "than recorded")
    return data


@contextmanager
def _reading(user: User, inode: Inode, operation: str) -> Iterator[None]:
    access.require_read(user, inode)
    if inode.is_dir:
        raise IsADirectory(f"{inode.path} is a directory")
    try:
        with _backend_call(inode.backend, operation):
            yield
    except FileNotFoundError:
        logger.error("blob %s of %s is missing from %s", inode.blob_key, inode.path,
                     inode.backend)
        raise FileNotFound("the file's bytes are missing from storage") from None
    record_file_operation("read", inode.backend)

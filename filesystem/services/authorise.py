"""Authorising a change at a path: one check, made before anything moves and again under the lock.

Every verb that changes the tree (mkdir, POST, PUT, copy, delete, move, chmod/chgrp/chown) says
what it needs of a path as a `Check` and runs it through `authorise` twice: first before
anything moves, so that a refusal costs nothing (not even reading an upload's body), then
`locked`, in its transaction under `distributed_lock(path)`, on the entry locked FOR UPDATE.
In between, another request may have put another user's entry at the path, chowned it or
chmodded a directory on the way: only what holds under the lock decides what the verb changes.
A small upload, stored before anything is looked up, is checked once: under the lock.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from filesystem import access
from filesystem.access import User
from filesystem.exceptions import FileNotFound, NotADirectory
from filesystem.models import Inode
from filesystem.services.common import locks_rows
from filesystem.services.lookup import walk_rows

__all__ = ["Check", "authorise", "require_create_below"]

T = TypeVar("T")
# A verb's check of a path: (the entry or None, its deepest existing ancestor, which is its
# parent when the entry exists) -> what the verb goes on with, or an error raised.
Check = Callable[[Inode | None, Inode | None], T]


def authorise(user: User, path: str, check: Check[T], *, locked: bool = False) -> T:
    """What `check` makes of the entry at `path` and its deepest existing ancestor, found with
    `x` checked on every directory on the way. `locked`: inside the verb's transaction, under
    `distributed_lock(path)`, with the entry locked FOR UPDATE until the transaction ends."""
    entry, nearest = walk_rows(user, path)
    if locked and locks_rows():
        # SQLite's BEGIN locked the whole database before the walk read it; with row locks the
        # entry is read again, locked.
        entry = next(iter(Inode.objects.rows_at([path], for_update=True)), None)
    return check(Inode.from_row(entry), Inode.from_row(nearest))


def require_create_below(user: User, nearest: Inode | None) -> None:
    """May the user create an entry below `nearest`, the deepest existing ancestor of the new
    path (missing directories in between are made by the user)?"""
    if nearest is None:
        raise FileNotFound("the root directory is missing; run 'manage.py migrate'")
    if not nearest.is_dir:
        raise NotADirectory(f"{nearest.path} is not a directory")
    access.require_create_in(user, nearest)

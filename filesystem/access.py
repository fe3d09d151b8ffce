"""Who may do what: POSIX permissions over Django users and groups (API.md §16.2).

The one place that decides: every read, list, create, overwrite, rename, move, copy, delete,
link generation and chmod/chown asks here. Superusers, `root` and the internal secret's
`internal-proxy` bypass every check, as root does. Otherwise a user is in the owner class of an
inode they own, else in its group class if they belong to its group, else "other":
reading a file or listing a directory needs `r`, writing a file `w`, reaching anything `x` on every
ancestor directory, creating/deleting/renaming an entry `w` and `x` on its parent, and with the
sticky bit on the parent the user must own the entry or the parent.
"""

from __future__ import annotations

from typing import Protocol

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from filesystem.exceptions import PermissionDenied
from filesystem.models import Inode

ADMIN_USERNAMES = frozenset({"root", "internal-proxy"})
READ, WRITE, EXECUTE = 4, 2, 1
STICKY = 0o1000

User = AbstractBaseUser | AnonymousUser


class Permissioned(Protocol):
    """What a check reads of an entry: an Inode, or a row of one (`InodeRow`, a listing's row,
    `values_list(..., named=True)`), so that paths and listings decide without models."""

    @property
    def owner_id(self) -> int: ...
    @property
    def group_id(self) -> int | None: ...
    @property
    def mode(self) -> int: ...


def is_admin(user: User) -> bool:
    return bool(getattr(user, "is_superuser", False)) or user.get_username() in ADMIN_USERNAMES


def group_ids(user: User) -> frozenset[int]:
    """The user's group ids, fetched once per user object (i.e. once per request)."""
    cached = getattr(user, "_callfs_group_ids", None)
    if cached is None:
        cached = frozenset(user.groups.values_list("id", flat=True)) if user.pk else frozenset()
        user._callfs_group_ids = cached
    return cached


def permission_bits(user: User, owner_id: int, group_id: int | None, mode: int) -> int:
    """The rwx bits (0-7) that apply to `user`: owner class, else group class, else other."""
    if owner_id == user.pk:
        return (mode >> 6) & 7
    if group_id is not None and group_id in group_ids(user):
        return (mode >> 3) & 7
    return mode & 7


def allows(user: User, entry: Permissioned, wanted: int) -> bool:
    """Does `entry` grant the user all the `wanted` bits (admins: always)?"""
    return (is_admin(user)
            or permission_bits(user, entry.owner_id, entry.group_id, entry.mode) & wanted == wanted)


def _require(user: User, entry: Permissioned, wanted: int) -> None:
    if not user.is_authenticated or not allows(user, entry, wanted):
        raise PermissionDenied()


def require_traverse(user: User, directory: Permissioned) -> None:
    """`x` on a directory on the way to an entry (paths resolve on rows, not models)."""
    _require(user, directory, EXECUTE)


def require_read(user: User, inode: Inode) -> None:
    """Reading a file's bytes or listing a directory (also: generating a download link)."""
    _require(user, inode, READ)


def may_see_digest(user: User, inode: Inode) -> bool:
    """May the user learn anything derived from a file's content: its sha256 (`ETag`,
    `X-CallFS-SHA256`) or whether a tag they send matches it? Only if they may read it (§16.5):
    the digest of a short secret gives the secret away to a brute-force search."""
    return user.is_authenticated and allows(user, inode, READ)


def can_descend(user: User, directory: Permissioned) -> bool:
    """May a recursive listing go into this directory (read and traverse it)?"""
    return allows(user, directory, READ | EXECUTE)


def require_write(user: User, inode: Inode) -> None:
    """Overwriting a file's bytes."""
    _require(user, inode, WRITE)


def require_create_in(user: User, parent: Permissioned) -> None:
    """Creating an entry inside the directory `parent`."""
    _require(user, parent, WRITE | EXECUTE)


def require_remove(user: User, entry: Permissioned, parent: Permissioned) -> None:
    """Deleting `entry` from `parent`, or renaming it away: `w`+`x` on the parent, and with the
    sticky bit the user must own the entry or the parent."""
    require_create_in(user, parent)
    if parent.mode & STICKY and not is_admin(user) \
            and user.pk not in (entry.owner_id, parent.owner_id):
        raise PermissionDenied()


def require_move_directory(user: User, directory: Inode) -> None:
    """Moving a directory to another parent rewrites its `..`: POSIX wants `w` on it too."""
    _require(user, directory, WRITE)


def require_chmod(user: User, inode: Inode) -> None:
    if not (is_admin(user) or inode.owner_id == user.pk):
        raise PermissionDenied()


def require_chgrp(user: User, inode: Inode, group_id: int) -> None:
    """The owner may give an entry to a group they belong to; superusers to any group."""
    if is_admin(user):
        return
    if inode.owner_id != user.pk or group_id not in group_ids(user):
        raise PermissionDenied()


def require_chown(user: User) -> None:
    if not is_admin(user):
        raise PermissionDenied()

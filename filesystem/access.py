"""Who may do what: the one place that decides (API.md §3.3, upstream's rules).

Every service asks here before it reads, lists, creates, overwrites, moves or deletes; no view
decides on its own. Admins (Django superusers, `root` and the internal secret's `internal-proxy`)
may do everything; owners may do everything to their own entries; others may read everything,
create entries inside directories, and neither overwrite nor delete what is not theirs.
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from filesystem.exceptions import PermissionDenied
from filesystem.models import Inode

ADMIN_USERNAMES = frozenset({"root", "internal-proxy"})

User = AbstractBaseUser | AnonymousUser


def is_admin(user: User) -> bool:
    return bool(getattr(user, "is_superuser", False)) or user.get_username() in ADMIN_USERNAMES


def _owns(user: User, inode: Inode) -> bool:
    return inode.owner_id == user.pk


def require_read(user: User, inode: Inode) -> None:
    """Reading and listing: every authenticated user may read every entry."""
    if not user.is_authenticated:
        raise PermissionDenied()


def require_write(user: User, inode: Inode) -> None:
    """Overwriting a file needs ownership; directories accept writes (children) from anyone."""
    if not (is_admin(user) or _owns(user, inode) or inode.is_dir):
        raise PermissionDenied()


def require_delete(user: User, inode: Inode) -> None:
    """Deleting, or moving away, needs ownership."""
    if not (is_admin(user) or _owns(user, inode)):
        raise PermissionDenied()


def require_create_in(user: User, parent: Inode | None) -> None:
    """Creating an entry inside `parent` (None: the parent does not exist yet and will be made)."""
    if parent is not None:
        require_write(user, parent)

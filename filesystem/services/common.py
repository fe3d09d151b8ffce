"""What every service module shares: the node, modes, FileInfo, and how the database locks."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime

from django.conf import settings
from django.db import transaction

from filesystem.models import Inode, InodeType

__all__ = ["IDS_PER_QUERY", "Precondition", "file_info", "format_time", "locks_rows", "new_mode",
           "this_node"]

IDS_PER_QUERY = 5000  # ids in one IN (...): well below SQLite's and PostgreSQL's parameter limits

# A conditional request's test of what a path holds (None: nothing), raising if it fails.
Precondition = Callable[[Inode | None], None]


@functools.lru_cache(maxsize=4096)  # every download formats its file's mtime: hot files repeat
def format_time(moment: datetime) -> str:
    """RFC 3339 with seconds precision in UTC, as upstream's X-CallFS-MTime."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def file_info(inode: Inode) -> dict[str, str | int]:
    """The FileInfo object of API.md §5.2 (plus `group`, §16.2)."""
    return {"name": inode.name or "/", "path": inode.path, "type": inode.type,
            "size": inode.size, "mode": f"{inode.mode:04o}", "owner": inode.owner_name or "",
            "group": inode.group_name or "", "mtime": format_time(inode.mtime)}


def this_node() -> str:
    """This node's id: where new local-disk bytes go, and whose disk a blob is on."""
    return settings.CALLFS.node_id


def new_mode(kind: str) -> int:
    """The mode of a new file or directory: rw (rwx for directories) for all, less the umask."""
    base = 0o777 if kind == InodeType.DIRECTORY else 0o666
    return base & ~settings.CALLFS.umask


def locks_rows() -> bool:
    """Does the database lock rows (PostgreSQL)? SQLite takes its single write lock at BEGIN
    instead, so whatever a transaction reads there stays current until it ends."""
    return transaction.get_connection().features.has_select_for_update

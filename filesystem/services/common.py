"""What every service module shares: the node, modes, FileInfo, re-reading under lock."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime

from django.conf import settings

from filesystem.models import Inode, InodeType

Precondition = Callable[[Inode | None], None]


@functools.lru_cache(maxsize=4096)  # every download formats its file's mtime: hot files repeat
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

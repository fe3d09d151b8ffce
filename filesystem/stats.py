"""Read-only totals for the admin: files, directories and bytes per backend and per node.

Pure reads: aggregate queries over `Inode`, nothing here changes a row or touches a backend.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db.models import Count, Q, Sum

from filesystem.models import Inode, InodeType

LOCAL_BACKEND = "localfs"


@dataclass(frozen=True)
class Usage:
    """How many files and how many bytes."""

    files: int = 0
    bytes: int = 0


@dataclass(frozen=True)
class Totals:
    """The whole filesystem at a glance: counts, and usage per backend and per node."""

    files: int
    directories: int
    bytes: int
    by_backend: dict[str, Usage] = field(default_factory=dict)
    by_node: dict[str, Usage] = field(default_factory=dict)


def _usage(rows) -> dict[str, Usage]:
    return {key: Usage(files, size) for key, files, size in rows}


def usage_by_node() -> dict[str, Usage]:
    """Files and bytes held on each node's local disk (S3 files belong to no node)."""
    rows = (Inode.objects.filter(type=InodeType.FILE, backend=LOCAL_BACKEND)
            .values("node_id").order_by("node_id")
            .annotate(files=Count("pk"), size=Sum("size", default=0))
            .values_list("node_id", "files", "size"))
    return _usage(rows)


def usage_by_backend() -> dict[str, Usage]:
    """Files and bytes in each storage backend."""
    rows = (Inode.objects.filter(type=InodeType.FILE)
            .values("backend").order_by("backend")
            .annotate(files=Count("pk"), size=Sum("size", default=0))
            .values_list("backend", "files", "size"))
    return _usage(rows)


def totals() -> Totals:
    """Counts of files and directories (the root included) and bytes, in three queries."""
    counts = Inode.objects.aggregate(
        files=Count("pk", filter=Q(type=InodeType.FILE)),
        directories=Count("pk", filter=Q(type=InodeType.DIRECTORY)),
        size=Sum("size", default=0),
    )
    return Totals(files=counts["files"], directories=counts["directories"],
                  bytes=counts["size"], by_backend=usage_by_backend(),
                  by_node=usage_by_node())

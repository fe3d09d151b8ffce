"""Metadata of the filesystem: inodes and their path lookups."""

from __future__ import annotations

from datetime import UTC, datetime
from types import ModuleType
from typing import ClassVar, NamedTuple

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connections, models, router
from django.db.models import Func, Q, Value
from django.db.models.functions import Concat, Substr
from django.utils import timezone

from callfs_site import fastpaths
from filesystem import paths


class InodeType(models.TextChoices):
    FILE = "file", "file"
    DIRECTORY = "directory", "directory"


SETUID, SETGID = 0o4000, 0o2000  # mode bits an entry may carry only as Inode.mode_problem says


class PathKey(Func):
    """`paths.path_key` computed by the database, for set-based updates of paths: the sha256
    hex digest of the path's UTF-8. SQLite runs Django's SHA256 function (registered on every
    connection); PostgreSQL its own sha256() (no pgcrypto, which Django's SHA256 needs)."""

    function = "SHA256"
    arity = 1
    output_field = models.CharField()

    def as_postgresql(self, compiler, connection, **extra_context):
        return self.as_sql(compiler, connection, **extra_context,
                           template="ENCODE(SHA256(CONVERT_TO(%(expressions)s, 'UTF8')), 'hex')")


class InodeQuerySet(models.QuerySet):
    # The hand-written SQL of `filesystem.rows` (which builds on this module): installed when
    # the app is ready (FilesystemConfig.ready), used while `fastpaths.enabled()`.
    fast_rows: ClassVar[ModuleType | None] = None

    def at(self, path: str) -> InodeQuerySet:
        """The inode at a canonical path (one indexed lookup)."""
        return self.filter(path_hash=paths.path_key(path))

    def at_any(self, path_list: list[str]) -> InodeQuerySet:
        return self.filter(path_hash__in=[paths.path_key(p) for p in path_list])

    def with_names(self) -> InodeQuerySet:
        return self.select_related("owner", "group")

    def rows_at(self, path_list: list[str], *, for_update: bool = False) -> list[InodeRow]:
        """The rows of the inodes at these paths (`InodeRow`: every column plus the owner's and
        group's names), in one query; `for_update` locks them until the transaction ends (where
        the database has row locks: SQLite takes its single write lock at BEGIN). Rows become
        models only where a caller needs one (`Inode.from_row`): ancestors are only checked for
        `x`. Every request resolves its target and ancestors here: the fast path
        (`filesystem.rows`) writes the SQL out and caches rows on SQLite."""
        if not path_list:
            return []
        if self.fast_rows and fastpaths.enabled():
            return self.fast_rows.select_at(connections[self.db], path_list,
                                            for_update=for_update)
        query = self.filter(path_hash__in=[paths.path_key(path) for path in path_list])
        if for_update:
            query = query.select_for_update(of=("self",))
        return list(map(InodeRow._make,
                        query.values_list(*_COLUMNS, "owner__username", "group__name")))

    def with_names_at(self, path_list: list[str], *, for_update: bool = False) -> list[Inode]:
        """`rows_at` as models, owner and group names included."""
        return [Inode.from_row(row, self.db) for row in self.rows_at(path_list,
                                                                     for_update=for_update)]

    def insert(self, inode: Inode) -> Inode:
        """INSERT a new inode (every upload and mkdir runs this; the fast path writes the SQL
        out, sending no signals: none are used)."""
        db = self._db or router.db_for_write(Inode)
        if self.fast_rows and fastpaths.enabled():
            return self.fast_rows.insert(connections[db], inode)
        inode.save(force_insert=True, using=db)
        return inode

    def rebase(self, old_prefix: str, new_prefix: str) -> int:
        """Move these inodes, all below `old_prefix`, to below `new_prefix`: their paths and
        path keys, computed by the database in one UPDATE (a moved tree's rows never travel
        to Python and back). The number of rows changed."""
        moved_path = Concat(Value(new_prefix), Substr("path", len(old_prefix) + 1))
        return self.update(path=moved_path, path_hash=PathKey(moved_path))

    def update_fields(self, inode: Inode, names: list[str]) -> None:
        """UPDATE these columns of one inode (every overwrite runs it; the fast path writes the
        SQL out)."""
        db = self._db or router.db_for_write(Inode)
        if self.fast_rows and fastpaths.enabled():
            self.fast_rows.update(connections[db], inode, names)
        else:
            inode.save(update_fields=names, using=db)


def _aware(value):
    """A datetime column as Django would give it: aware, in UTC (SQLite stores naive UTC text)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


class InodeRow(NamedTuple):
    """A row of `InodeQuerySet.rows_at`: every concrete column of an inode by its attname, in
    `Inode._meta` order (a test holds them to it), then its owner's and group's names. The
    fast path on SQLite leaves the times as the stored text (`Inode.from_row` parses them)."""

    id: int
    parent_id: int | None
    name: str
    path: str
    path_hash: str
    type: str
    size: int
    owner_id: int
    group_id: int | None
    mode: int
    ctime: datetime | str
    mtime: datetime | str
    backend: str
    node_id: str
    blob_key: str
    sha256: str
    owner_name: str
    group_name: str | None


class Inode(models.Model):
    """A file or directory. Bytes live in a backend under the opaque `blob_key`, never under the
    path, so renames are metadata-only and an overwrite swaps blobs in one transaction."""

    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="children"
    )
    name = models.CharField(max_length=255, blank=True)
    path = models.TextField(help_text="Materialised canonical path, e.g. /docs/a.txt")
    path_hash = models.CharField(max_length=64, unique=True, editable=False)
    type = models.CharField(max_length=9, choices=InodeType.choices)
    size = models.BigIntegerField(default=0)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="inodes"
    )
    group = models.ForeignKey(
        "auth.Group", null=True, blank=True, on_delete=models.SET_NULL, related_name="inodes"
    )
    mode = models.PositiveIntegerField(help_text="Unix permission bits, e.g. 0o644")
    ctime = models.DateTimeField(default=timezone.now, help_text="last metadata change")
    mtime = models.DateTimeField(default=timezone.now, help_text="last content change")
    backend = models.CharField(max_length=16, default="localfs")
    node_id = models.CharField(
        max_length=64, blank=True, help_text="node holding the bytes (local-disk backend only)"
    )
    blob_key = models.CharField(max_length=128, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)

    objects = InodeQuerySet.as_manager()

    class Meta:
        ordering = ["path"]
        constraints = [
            models.UniqueConstraint(fields=["parent", "name"], name="inode_unique_name_in_dir"),
            models.UniqueConstraint(
                fields=["name"], condition=Q(parent__isnull=True), name="inode_single_root"
            ),
            models.CheckConstraint(condition=Q(size__gte=0), name="inode_size_not_negative"),
            models.CheckConstraint(condition=Q(mode__lte=0o7777), name="inode_mode_12_bits"),
            models.CheckConstraint(
                condition=Q(type=InodeType.FILE) | Q(size=0, blob_key=""),
                name="inode_directory_has_no_bytes",
            ),
            models.CheckConstraint(
                condition=Q(parent__isnull=False) | Q(path="/", type=InodeType.DIRECTORY),
                name="inode_only_root_has_no_parent",
            ),
        ]

    def __str__(self) -> str:
        return self.path

    def save(self, *args, **kwargs):
        self.path_hash = paths.path_key(self.path)
        super().save(*args, **kwargs)

    def clean(self) -> None:
        """The invariant no database constraint states: the mode's special bits (below)."""
        problem = self.mode_problem(self.type, self.mode)
        if problem:
            raise ValidationError({"mode": problem})

    @staticmethod
    def mode_problem(kind: str, mode: int) -> str | None:
        """Why `mode` cannot be an entry's of this kind, or None: only bits that mean something
        here are stored (API.md §16.2). Nothing is executed, so setuid means nothing, nor
        setgid on a file; setgid on a directory says what every directory here does anyway
        (new entries take its group) and is kept, as `chmod g+s` on a shared folder."""
        if not 0 <= mode <= 0o7777:
            return "must be between 0000 and 7777"
        if mode & SETUID:
            return "setuid (4000) is not supported"
        if mode & SETGID and kind != InodeType.DIRECTORY:
            return "setgid (2000) applies to directories only"
        return None

    @classmethod
    def from_row(cls, row: InodeRow | None, db: str = "default") -> Inode | None:
        """A model from a `rows_at` row, owner and group names included (None stays None)."""
        if row is None:
            return None
        values = list(row[:_NAMES])
        for index in _TIME_COLUMNS:
            values[index] = _aware(values[index])
        inode = cls.from_db(db, _COLUMNS, values)
        inode.__dict__["_owner_name"], inode.__dict__["_group_name"] = \
            row.owner_name, row.group_name
        return inode

    @property
    def is_dir(self) -> bool:
        return self.type == InodeType.DIRECTORY

    @property
    def is_root(self) -> bool:
        return self.parent_id is None

    @property
    def owner_name(self) -> str:
        return self.__dict__.get("_owner_name") or self.owner.username

    @property
    def group_name(self) -> str:
        if "_group_name" in self.__dict__:
            return self.__dict__["_group_name"] or ""
        return self.group.name if self.group_id else ""

    @property
    def mode_string(self) -> str:
        return f"{self.mode:04o}"


_COLUMNS = [field.attname for field in Inode._meta.concrete_fields]
_TIME_COLUMNS = [index for index, field in enumerate(Inode._meta.concrete_fields)
                 if isinstance(field, models.DateTimeField)]
_NAMES = len(_COLUMNS)  # a row's owner and group names follow its columns


class CopyState(models.TextChoices):
    OK = "ok", "ok"
    MISSING = "missing", "missing or corrupt"  # found so by a read, fsck or repair


class Replica(models.Model):
    """A further copy of a local-disk file's bytes, on another node than its primary
    (`Inode.node_id`, the node X-CallFS-Instance-ID names). A file's copies are its primary and
    its replicas: CALLFS_REPLICAS says how many it should have. Every copy of a version has
    the version's blob key; a row naming another key than its inode's is stale."""

    inode = models.ForeignKey(Inode, on_delete=models.CASCADE, related_name="replicas")
    node_id = models.CharField(max_length=64)
    blob_key = models.CharField(max_length=128)
    sha256 = models.CharField(max_length=64, help_text="as verified when written or last checked")
    state = models.CharField(max_length=8, choices=CopyState.choices, default=CopyState.OK)
    created_at = models.DateTimeField(default=timezone.now)
    verified_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["inode_id", "node_id"]
        constraints = [
            models.UniqueConstraint(fields=["inode", "node_id"], name="replica_one_per_node"),
        ]
        indexes = [models.Index(fields=["node_id"], name="replica_node")]

    def __str__(self) -> str:
        return f"{self.inode_id} on {self.node_id}"


class PendingDiscard(models.Model):
    """A blob a node must delete from its disk: its file was deleted or overwritten while the
    node could not be reached. The node deletes it when it is back (its background repair), so
    old bytes never come back; until then nothing references them."""

    node_id = models.CharField(max_length=64)
    blob_key = models.CharField(max_length=128)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["node_id", "blob_key"], name="discard_once"),
        ]

    def __str__(self) -> str:
        return f"{self.blob_key} on {self.node_id}"

"""Metadata of the filesystem: inodes and the API keys that identify users."""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import secrets
import sqlite3
from datetime import UTC, datetime

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connections, models, router
from django.db.models import Q
from django.utils import timezone

from filesystem import paths

logger = logging.getLogger(__name__)


class InodeType(models.TextChoices):
    FILE = "file", "file"
    DIRECTORY = "directory", "directory"


SETUID, SETGID = 0o4000, 0o2000  # mode bits an entry may carry only as Inode.mode_problem says

# The rows each process keeps between requests (see InodeQuerySet.rows_at): about 1.2 KB each,
# so at most 5 MB; past the bound the cache starts afresh.
ROW_CACHE_ENTRIES = 4096
_UNKNOWN = object()
_GENERATION_SQL = "SELECT value FROM filesystem_inode_generation"  # migration 0003
# Migration 0003's triggers. Django remakes a table on SQLite to alter it, which drops its
# triggers: without all of them the cache stays off (checked once per process and database).
_TRIGGERS_SQL = ("SELECT COUNT(*) FROM sqlite_master WHERE type = 'trigger' "
                 "AND name LIKE 'filesystem\\_inode\\_generation\\_%' ESCAPE '\\'")
_TRIGGERS = 7


class _RowCache:
    """Rows of path lookups, shared by a process's threads, per SQLite database, valid while the
    database's inode generation stands: triggers (migration 0003) move it with every committed
    change to inodes and to the user and group names joined to them, from any process. Outside
    transactions only: inside one, reads may see its own uncommitted rows. Each lookup reads
    the counter first, so what it then reads of the rows is at least as new as the counter
    says, and a dict is kept only for the newest counter seen."""

    def __init__(self) -> None:
        self._by_database: dict[str, tuple[int, dict]] = {}
        self._usable: dict[str, bool] = {}

    def current(self, connection) -> dict | None:
        if connection.vendor != "sqlite":
            return None
        # Connections are borrowed per request (callfs_site.sqlite): a request's first lookup
        # finds none yet, and borrowing one is cheaper than the query the cache saves.
        connection.ensure_connection()
        raw = connection.connection
        if (raw is None or not connection.autocommit
                or connection.in_atomic_block or raw.in_transaction):
            return None
        name = connection.settings_dict["NAME"]
        try:
            usable = self._usable.get(name)
            if usable is None:
                usable = self._usable[name] = self._triggers_present(raw, name)
            if not usable:
                return None
            generation = raw.execute(_GENERATION_SQL).fetchone()[0]
        except sqlite3.DatabaseError:  # not migrated yet, or broken: the query will tell
            return None
        kept = self._by_database.get(name)
        if kept is None or generation > kept[0]:
            kept = self._by_database[name] = (generation, {})
        return kept[1] if generation == kept[0] else None  # else this thread is behind

    @staticmethod
    def _triggers_present(raw, name: str) -> bool:
        present = raw.execute(_TRIGGERS_SQL).fetchone()[0]
        if present != _TRIGGERS:
            logger.warning("SQLite database %s has %d of the %d inode generation triggers "
                           "(migration 0003; a table remade by a later migration loses "
                           "them): path lookups are not cached", name, present, _TRIGGERS)
        return present == _TRIGGERS

    def clear(self) -> None:
        self._by_database.clear()
        self._usable.clear()


row_cache = _RowCache()


class InodeQuerySet(models.QuerySet):
    def at(self, path: str) -> InodeQuerySet:
        """The inode at a canonical path (one indexed lookup)."""
        return self.filter(path_hash=paths.path_key(path))

    def at_any(self, path_list: list[str]) -> InodeQuerySet:
        return self.filter(path_hash__in=[paths.path_key(p) for p in path_list])

    def with_names(self) -> InodeQuerySet:
        return self.select_related("owner", "group")

    def rows_at(self, path_list: list[str], *, for_update: bool = False) -> list[tuple]:
        """The rows of the inodes at these paths, each every column plus the owner's and group's
        names (see `Row`), in one query; `for_update` locks them until the transaction ends
        (where the database has row locks: SQLite takes its single write lock at BEGIN).

        Every request resolves its target and ancestors here, so the SQL is written out once:
        the ORM compiler cost more than the query itself (BENCHMARKS.md). Rows stay tuples until
        a caller needs a model (`Inode.from_row`): ancestors are only checked for `x`. On
        SQLite, rows and absences found are kept per path (`row_cache`) until an inode, user
        or group changes, and a lookup of known paths reads one counter instead."""
        if not path_list:
            return []
        connection = connections[self.db]
        cache = None if for_update else row_cache.current(connection)
        if cache is not None:
            known = [cache.get(path, _UNKNOWN) for path in path_list]
            if not any(row is _UNKNOWN for row in known):
                return [row for row in known if row is not None]
        sql = _select_at_sql(len(path_list), connection.vendor)
        if for_update and connection.features.has_select_for_update:
            sql += " FOR UPDATE OF i"  # not the group's row (the nullable side of a join)
        with connection.cursor() as cursor:
            cursor.execute(sql, [paths.path_key(p) for p in path_list])
            rows = cursor.fetchall()
        if cache is not None:
            if len(cache) + len(path_list) > ROW_CACHE_ENTRIES:
                cache.clear()
            found = dict.fromkeys(path_list)  # None: no inode there
            found.update((row[Row.PATH], row) for row in rows)
            cache.update(found)  # at once: another thread never sees a row's path as absent
        return rows

    def with_names_at(self, path_list: list[str], *, for_update: bool = False) -> list[Inode]:
        """`rows_at` as models, owner and group names included."""
        return [Inode.from_row(row, self.db) for row in self.rows_at(path_list,
                                                                     for_update=for_update)]

    def insert(self, inode: Inode) -> Inode:
        """INSERT a new inode with SQL written out (every upload and mkdir runs this): the ORM's
        insert compiler cost more than the statement. No signals are sent; none are used."""
        inode.path_hash = paths.path_key(inode.path)
        db = self._db or router.db_for_write(Inode)
        connection = connections[db]
        fields = _insert_fields()
        values = [field.get_db_prep_save(getattr(inode, field.attname), connection)
                  for field in fields]
        returning = connection.features.can_return_columns_from_insert  # SQLite >= 3.35
        with connection.cursor() as cursor:
            cursor.execute(_insert_sql(returning), values)
            inode.pk = cursor.fetchone()[0] if returning else cursor.lastrowid
        inode._state.adding, inode._state.db = False, db
        return inode

    def update_fields(self, inode: Inode, names: list[str]) -> None:
        """UPDATE these columns of one inode, with SQL written out (every overwrite runs it)."""
        connection = connections[self._db or router.db_for_write(Inode)]
        fields = [Inode._meta.get_field(name) for name in names]
        assignments = ", ".join(f'"{field.column}" = %s' for field in fields)
        values = [field.get_db_prep_save(getattr(inode, field.attname), connection)
                  for field in fields]
        with connection.cursor() as cursor:
            cursor.execute(f"UPDATE {Inode._meta.db_table} SET {assignments} "  # noqa: S608
                           "WHERE id = %s", [*values, inode.pk])


def _aware(value):
    """A datetime column as Django would give it: aware, in UTC (SQLite stores naive UTC text)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


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
    def from_row(cls, row: tuple | None, db: str = "default") -> Inode | None:
        """A model from a `rows_at` row, owner and group names included (None stays None)."""
        if row is None:
            return None
        values = list(row[:_NAMES])
        for index in _TIME_COLUMNS:
            values[index] = _aware(values[index])
        inode = cls.from_db(db, _COLUMNS, values)
        inode.__dict__["_owner_name"], inode.__dict__["_group_name"] = row[_NAMES:]
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


class Row:
    """Positions in a `rows_at` row, for callers that decide on tuples without models."""

    PATH, TYPE, OWNER, GROUP, MODE = (_COLUMNS.index(name) for name in
                                      ("path", "type", "owner_id", "group_id", "mode"))


@functools.cache
def _select_at_sql(count: int, vendor: str) -> str:
    """SELECT every inode column plus owner and group names WHERE path_hash IN (count keys).
    On SQLite the times come back as text, parsed only for rows that become models (its
    driver would parse them all, ancestors too). Every table read here must move the inode
    generation when it changes (migration 0003's triggers), or `row_cache` would serve stale
    rows."""
    user_table = Inode._meta.get_field("owner").related_model._meta.db_table
    group_table = Inode._meta.get_field("group").related_model._meta.db_table
    time_columns = {_COLUMNS[index] for index in _TIME_COLUMNS}
    columns = ", ".join(
        f'CAST(i.{name} AS TEXT) AS "{name}"' if vendor == "sqlite" and name in time_columns
        else f"i.{name}" for name in _COLUMNS)
    placeholders = ", ".join(["%s"] * count)
    return (f"SELECT {columns}, u.username, g.name "  # noqa: S608 - names from _meta only
            f"FROM {Inode._meta.db_table} i JOIN {user_table} u ON u.id = i.owner_id "
            f"LEFT JOIN {group_table} g ON g.id = i.group_id "
            f"WHERE i.path_hash IN ({placeholders})")


@functools.cache
def _insert_fields() -> list[models.Field]:
    return [field for field in Inode._meta.concrete_fields if not field.primary_key]


@functools.cache
def _insert_sql(returning: bool) -> str:
    """INSERT ... [RETURNING id] (SQLite and PostgreSQL both quote names the standard way)."""
    columns = ", ".join(f'"{field.column}"' for field in _insert_fields())
    placeholders = ", ".join(["%s"] * len(_insert_fields()))
    return (f"INSERT INTO {Inode._meta.db_table} ({columns}) "  # noqa: S608 - names from _meta
            f"VALUES ({placeholders})" + (" RETURNING id" if returning else ""))


@functools.lru_cache(maxsize=4)
def _pepper(secret_key: str) -> bytes:
    return hashlib.sha256(f"callfs-api-key:{secret_key}".encode()).digest()


def _api_key_digest(key: str) -> str:
    return hmac.new(_pepper(settings.SECRET_KEY), key.encode(), hashlib.sha256).hexdigest()


class ApiKeyQuerySet(models.QuerySet):
    def active(self) -> ApiKeyQuerySet:
        return self.filter(revoked_at__isnull=True)

    def matching(self, key: str) -> ApiKeyQuerySet:
        return self.filter(digest=ApiKey.digest_for(key))


class ApiKey(models.Model):
    """A Bearer credential of one user. Only a keyed hash is stored; the key is shown once."""

    PREFIX_LENGTH = 10

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys"
    )
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=PREFIX_LENGTH, db_index=True, editable=False)
    digest = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"

    @staticmethod
    def generate_key() -> str:
        return "cfs_" + secrets.token_urlsafe(32)

    @staticmethod
    def digest_for(key: str) -> str:
        """The keyed hash a key is stored and looked up by."""
        return _api_key_digest(key)

    def set_key(self, key: str) -> None:
        self.prefix = key[: self.PREFIX_LENGTH]
        self.digest = _api_key_digest(key)

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

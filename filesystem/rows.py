"""Inode rows by hand-written SQL, and the row cache: the fast paths of `InodeQuerySet.rows_at`,
`insert` and `update_fields` (callfs_site.fastpaths; stock mode runs the ORM there instead).

Every request resolves its target and its ancestors, and every upload and mkdir inserts: the
ORM's compilers cost several times the statements they build (BENCHMARKS.md), so these few
statements are written out once, from the model's `_meta`. On SQLite, rows and absences found
are kept per path (`row_cache`) until an inode, user or group changes, and a lookup of known
paths reads one counter instead.
"""

from __future__ import annotations

import functools
import logging
import sqlite3

from django.db import models

from filesystem import paths
from filesystem.models import Inode, InodeRow

logger = logging.getLogger(__name__)

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


def select_at(connection, path_list: list[str], *, for_update: bool) -> list[InodeRow]:
    """`InodeQuerySet.rows_at` in one written-out query, from the row cache where it can."""
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
        rows = list(map(InodeRow._make, cursor.fetchall()))
    if cache is not None:
        if len(cache) + len(path_list) > ROW_CACHE_ENTRIES:
            cache.clear()
        found = dict.fromkeys(path_list)  # None: no inode there
        found.update((row.path, row) for row in rows)
        cache.update(found)  # at once: another thread never sees a row's path as absent
    return rows


def insert(connection, inode: Inode) -> Inode:
    """`InodeQuerySet.insert` as one written-out INSERT."""
    inode.path_hash = paths.path_key(inode.path)
    fields = _insert_fields()
    values = [field.get_db_prep_save(getattr(inode, field.attname), connection)
              for field in fields]
    returning = connection.features.can_return_columns_from_insert  # SQLite >= 3.35
    with connection.cursor() as cursor:
        cursor.execute(_insert_sql(returning), values)
        inode.pk = cursor.fetchone()[0] if returning else cursor.lastrowid
    inode._state.adding, inode._state.db = False, connection.alias
    return inode


def update(connection, inode: Inode, names: list[str]) -> None:
    """`InodeQuerySet.update_fields` as one written-out UPDATE."""
    fields = [Inode._meta.get_field(name) for name in names]
    assignments = ", ".join(f'"{field.column}" = %s' for field in fields)
    values = [field.get_db_prep_save(getattr(inode, field.attname), connection)
              for field in fields]
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {Inode._meta.db_table} SET {assignments} "  # noqa: S608
                       "WHERE id = %s", [*values, inode.pk])


@functools.cache
def _select_at_sql(count: int, vendor: str) -> str:
    """SELECT every inode column plus owner and group names WHERE path_hash IN (count keys).
    On SQLite the times come back as text, parsed only for rows that become models (its
    driver would parse them all, ancestors too). Every table read here must move the inode
    generation when it changes (migration 0003's triggers), or `row_cache` would serve stale
    rows."""
    user_table = Inode._meta.get_field("owner").related_model._meta.db_table
    group_table = Inode._meta.get_field("group").related_model._meta.db_table
    columns = ", ".join(
        f'CAST(i.{field.column} AS TEXT) AS "{field.column}"'
        if vendor == "sqlite" and isinstance(field, models.DateTimeField) else f"i.{field.column}"
        for field in Inode._meta.concrete_fields)
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

"""Resolving paths (one query, x on every ancestor), listings and opening files."""

from __future__ import annotations

import functools
import logging
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import BinaryIO, NamedTuple, TypeVar

from django.db import connections, router
from django.db.backends.base.base import BaseDatabaseWrapper

from callfs_site.metrics import record_file_operation
from filesystem import access, paths
from filesystem.access import User
from filesystem.exceptions import (
    FileNotFound,
    InvalidRequest,
    IsADirectory,
    NotADirectory,
)
from filesystem.models import Inode, InodeRow, InodeType
from filesystem.services.blobs import (
    BytesReplaced,
    backend_call,
    missing_bytes,
    open_copy,
    read_copy,
)

__all__ = [
    "DEFAULT_LISTING_DEPTH",
    "LISTING_PAGE",
    "LISTING_PENDING",
    "LISTING_PREFETCH_ROWS",
    "MAX_LISTING_DEPTH",
    "READ_ATTEMPTS",
    "Entry",
    "Listing",
    "Position",
    "list_children",
    "list_directory",
    "on_current_version",
    "open_file",
    "read_file",
    "resolve",
    "stat",
    "walk_rows",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")
# Tries of `on_current_version`: a reader loses one only to a writer's commit in the moment
# between its lookup and its open, so even 20 writers at once rarely cost it a second.
READ_ATTEMPTS = 5

MAX_LISTING_DEPTH = 1000


DEFAULT_LISTING_DEPTH = 100


def resolve(path: str) -> Inode | None:
    """The inode at a canonical path with its owner and group, or None."""
    return Inode.objects.with_names().at(path).first()


def walk_rows(user: User, path: str) -> tuple[InodeRow | None, InodeRow | None]:
    """(the row at `path` or None, the row of its deepest existing ancestor) from one query for
    the entry and all its ancestors, checking `x` on each directory passed through - so a
    directory the user cannot traverse answers 403 and leaks nothing about what lies below it."""
    chain = paths.ancestors(path)
    rows = {row.path: row for row in Inode.objects.rows_at([*chain, path])}
    deepest = None
    for ancestor in chain:
        row = rows.get(ancestor)
        if row is None or row.type != InodeType.DIRECTORY:
            return None, row or deepest
        access.require_traverse(user, row)
        deepest = row
    return rows.get(path), deepest


def stat(user: User, path: str, *, read: bool = False) -> Inode:
    """The inode at `path` if the user may reach it (`x` on every ancestor); 404 if missing.
    With `read`, also `r` on the entry itself (a file's bytes, a directory's names), so that a
    GET answers 403 before any conditional or Range is weighed against the content."""
    entry, _ = walk_rows(user, path)
    if entry is None:
        raise FileNotFound()
    inode = Inode.from_row(entry)
    if read:
        access.require_read(user, inode)
    return inode


# Listings read rows a page at a time while their answer is sent, so a listing holds at most
# about LISTING_PAGE + LISTING_PREFETCH_ROWS rows and LISTING_PENDING directory ids per level,
# whatever the size of the tree (levels are capped at MAX_LISTING_DEPTH + 1).
LISTING_PAGE = 1000  # rows one query reads at most
LISTING_PENDING = 100  # subdirectories each level keeps in hand; the next are read by name
LISTING_PREFETCH_ROWS = 4000  # children of small directories read ahead, several in one query

# An entry: FileInfo's fields in order (name, path, type, size, mode, owner, group, mtime), mode
# an int, mtime RFC 3339 text.
Entry = tuple[str, str, str, int, int, str, str, str]


@dataclass(frozen=True)
class Position:
    """Where a listing goes on: just after the entry `names` below the listed directory (one
    name per level) of this type, in the listing's order. The entry need not exist any more."""

    names: tuple[str, ...]
    type: str


@dataclass(frozen=True)
class Listing:
    """A directory's listing, checked and ready to read. `entries()` reads the database while it
    is iterated, a page at a time: the caller may stream it. Entries carry only name, path and
    type when `full` is false (the caller may read the directory but not traverse it)."""

    path: str
    recursive: bool
    max_depth: int
    full: bool
    user: User = field(repr=False)
    directory_id: int = field(repr=False)
    levels: int = field(repr=False)  # levels below the directory this caller gets listed
    asked_levels: int = field(repr=False)  # ... that the request asked for

    def entries(self, after: Position | None = None) -> Iterator[Entry]:
        """The entries in order (§7.10): a directory's children, files then directories, each
        by name, then each subdirectory's subtree in child order; from just after `after`.
        Every directory entered is checked for `r` and `x` as it is reached, on every page."""
        walk = _Walk(self.user, self.levels)
        return walk.run(walk.start(self, after))

    def position(self, entry: Entry) -> Position:
        """The position just after `entry`, to go on from in a later request."""
        relative = entry[1][len(self.path) + 1:] if self.path != paths.ROOT else entry[1][1:]
        return Position(tuple(relative.split("/")), entry[2])

    def position_at(self, relative: str, kind: str) -> Position:
        """The position after the entry at `relative` (names below this directory, joined by
        "/") of type `kind`, as `position` gave it; InvalidRequest for anything it cannot have
        given: a name that is not a plain name ("..", "", "a/b") could leave the directory."""
        names = tuple(relative.split("/"))
        if (kind not in InodeType.values or not 1 <= len(names) <= self.asked_levels
                or not all(paths.is_valid_name(name) for name in names)):
            raise InvalidRequest("not a position in this listing")
        return Position(names, kind)


def list_children(user: User, directory: Inode) -> Listing:
    """The immediate children of a directory, read lazily (names and types only without `x` on
    it): files first, then directories, each by name (upstream's SQL order). Needs `r` on it."""
    access.require_read(user, directory)
    record_file_operation("list", directory.backend)
    return Listing(directory.path, False, 0, access.allows(user, directory, access.EXECUTE),
                   user, directory.pk, 1, 1)


def list_directory(user: User, path: str, *, recursive: bool = False,
                   max_depth: int | None = None) -> Listing:
    """The listing of /v1/directories (§7.10, §16.5), every check made now. Recursive listings
    reach `max_depth` + 1 levels below the directory (0: its children only; default 100, at
    most 1000) and enter only directories the user may read and traverse."""
    directory = stat(user, path)
    if not directory.is_dir:
        raise NotADirectory(f"{path} is not a directory")
    if not recursive:
        return list_children(user, directory)
    access.require_read(user, directory)
    depth = DEFAULT_LISTING_DEPTH if max_depth is None else min(max_depth, MAX_LISTING_DEPTH)
    full = access.allows(user, directory, access.EXECUTE)
    record_file_operation("list", directory.backend)
    # Without `x` its names are readable, but nothing below it is reachable.
    return Listing(directory.path, True, depth, full, user, directory.pk,
                   depth + 1 if full else 1, depth + 1)


class _ListingRow(NamedTuple):
    """A row of a listing's query (`_listing_sql` selects these fields, in this order): what
    decides permissions and order, then the entry's FileInfo; on SQLite `mtime` is the stored
    text, cut to shape by `_entry` without parsing. The walk keeps rows as the database driver
    gives them, plain tuples in this order, and names them where it reads them: by unpacking
    (`_entry`), by field position (`_TYPE`, `_PARENT_ID`), or as a _ListingRow for the few it
    enters or pages after. A _ListingRow for every row would make listings markedly slower on
    CPython 3.11: building one per row, reading its attributes, and the garbage collector,
    which never stops tracking tuple subclasses (BENCHMARKS.md)."""

    id: int
    parent_id: int
    owner_id: int
    group_id: int | None
    name: str
    path: str
    type: str
    size: int
    mode: int
    owner_name: str
    group_name: str | None
    mtime: datetime | str


class _SubdirectoryRow(NamedTuple):
    """A row of `_SUBDIRECTORIES`: what choosing the subdirectories to enter needs."""

    id: int
    name: str
    owner_id: int
    group_id: int | None
    mode: int


class _Frame:
    """A directory of a walk: its children (after `after`) first, then its subdirectories'
    subtrees, those in `pending` first, then more read by name after `last_dir`."""

    __slots__ = ("id", "level", "after", "listed", "pending", "last_dir", "more_dirs")

    def __init__(self, directory_id: int, level: int) -> None:
        self.id, self.level = directory_id, level
        self.after: tuple[str, str] | None = None  # (type, name) of the entry to go on after
        self.listed = False
        self.pending: deque[int] = deque()
        self.last_dir = ""  # no name sorts before "": every child's name is longer
        self.more_dirs = True


class _Walk:
    """One listing's walk: a stack of directories, one per level, and the children of small
    directories read ahead of being entered (`ahead`, at most LISTING_PREFETCH_ROWS rows)."""

    def __init__(self, user: User, levels: int) -> None:
        self.user, self.levels = user, levels
        self.ahead: dict[int, list[tuple]] = {}
        self.ahead_rows = 0
        self.sizes: dict[int, int] = {}  # child counts known of directories not read ahead

    def start(self, listing: Listing, after: Position | None) -> list[_Frame]:
        """The stack of a walk from the beginning or from just after `after`: the directories on
        the way to it that still exist and may still be entered, one query for all of them."""
        stack = [_Frame(listing.directory_id, 0)]
        if after is None:
            return stack
        *through, last = after.names
        on_the_way, path = [], listing.path
        for name in through:
            path = paths.join(path, name)
            on_the_way.append(path)
        rows = {row.path: row for row in Inode.objects.rows_at(on_the_way)}
        for name, path in zip(through, on_the_way, strict=True):
            frame = stack[-1]
            frame.listed, frame.last_dir = True, name  # its subdirectories after this one
            row = rows.get(path)
            if (frame.level + 1 >= self.levels or row is None
                    or row.type != InodeType.DIRECTORY or not access.can_descend(self.user, row)):
                return stack  # gone, replaced or closed since: its subtree is skipped
            stack.append(_Frame(row.id, frame.level + 1))
        stack[-1].after = (after.type, last)
        return stack

    def run(self, stack: list[_Frame]) -> Iterator[Entry]:
        while stack:
            frame = stack[-1]
            if not frame.listed:
                frame.listed = True
                yield from self._children(frame)
            if frame.level + 1 >= self.levels:
                stack.pop()
                continue
            if not frame.pending and frame.more_dirs:
                self._read_subdirectories(frame)
            if not frame.pending:
                stack.pop()
                continue
            child = frame.pending.popleft()
            if child not in self.ahead:
                self._read_ahead([child, *frame.pending])
            stack.append(_Frame(child, frame.level + 1))

    def _children(self, frame: _Frame) -> Iterator[Entry]:
        """A directory's entries after `frame.after`: from the rows read ahead, from one query
        for a small directory, else each type by name a page at a time (the index on
        (parent, name) gives that order without sorting the directory)."""
        self.sizes.pop(frame.id, None)
        rows = None
        if frame.after is None:
            rows = self.ahead.pop(frame.id, None)
            if rows is not None:
                self.ahead_rows -= len(rows)
            else:
                rows = _listing_rows(_FIRST, [frame.id, LISTING_PAGE + 1])
                rows = _files_first(rows) if len(rows) <= LISTING_PAGE else None
        if rows is not None:
            if frame.level + 1 < self.levels:
                self._keep_subdirectories(frame, rows)
            yield from map(_entry, rows)
            return
        kind, name = frame.after or (InodeType.FILE, "")
        for this in (InodeType.FILE, InodeType.DIRECTORY):
            if this == InodeType.FILE and kind != InodeType.FILE:
                continue
            last = name if this == kind else ""
            while True:
                rows = _listing_rows(_OF_TYPE, [frame.id, this, last, LISTING_PAGE])
                yield from map(_entry, rows)
                if len(rows) < LISTING_PAGE:
                    break
                last = _ListingRow._make(rows[-1]).name

    def _keep_subdirectories(self, frame: _Frame, rows: list[tuple]) -> None:
        """The subdirectories to enter, from a directory's complete rows (the first
        LISTING_PENDING; the rest are read by name later)."""
        directories = [_ListingRow._make(row) for row in rows if row[_TYPE] == InodeType.DIRECTORY]
        enter = [row for row in directories if access.can_descend(self.user, row)]
        frame.pending.extend(row.id for row in enter[:LISTING_PENDING])
        frame.more_dirs = len(enter) > LISTING_PENDING
        if frame.more_dirs:
            frame.last_dir = enter[LISTING_PENDING - 1].name

    def _read_subdirectories(self, frame: _Frame) -> None:
        """The next subdirectories to enter, by name after the last one read."""
        while frame.more_dirs and not frame.pending:
            rows = list(map(_SubdirectoryRow._make, _rows(
                _SUBDIRECTORIES, [frame.id, frame.last_dir, LISTING_PENDING])))
            frame.pending.extend(row.id for row in rows if access.can_descend(self.user, row))
            frame.more_dirs = len(rows) == LISTING_PENDING
            if rows:
                frame.last_dir = rows[-1].name

    def _read_ahead(self, ids: list[int]) -> None:
        """The children of the directories among `ids` (the next ones the walk enters) that
        are small enough, in two queries instead of one each: a tree of many small directories
        would otherwise cost a query per directory. Empty ones cost nothing more."""
        unknown = [i for i in ids if i not in self.sizes and i not in self.ahead]
        if unknown:
            counts = dict(_rows(_sql(_COUNTS, len(unknown)), unknown))
            self.sizes.update((i, counts.get(i, 0)) for i in unknown)
        room = LISTING_PREFETCH_ROWS - self.ahead_rows
        chosen = []
        for i in ids:
            size = self.sizes.get(i)
            if size == 0:
                del self.sizes[i]
                self.ahead[i] = []
            elif size is not None and size <= min(room, LISTING_PAGE):
                chosen.append(i)
                room -= size
        if len(chosen) < 2:
            return  # one directory reads its own first page as cheaply
        found: dict[int, list[tuple]] = {i: [] for i in chosen}
        for row in _listing_rows(_sql(_IN_PARENTS, len(chosen)), chosen):
            found[row[_PARENT_ID]].append(row)
        for i, rows in found.items():
            del self.sizes[i]
            self.ahead[i] = _files_first(rows)
            self.ahead_rows += len(rows)


_FIRST = "i.parent_id = %s ORDER BY i.name LIMIT %s"
_OF_TYPE = "i.parent_id = %s AND i.type = %s AND i.name > %s ORDER BY i.name LIMIT %s"
_IN_PARENTS = "i.parent_id IN ({}) ORDER BY i.parent_id, i.name"
_SUBDIRECTORIES = (f"SELECT {', '.join(_SubdirectoryRow._fields)} "  # noqa: S608
                   f"FROM {Inode._meta.db_table} "
                   f"WHERE parent_id = %s AND type = '{InodeType.DIRECTORY}' AND name > %s "
                   "ORDER BY name LIMIT %s")
_COUNTS = (f"SELECT parent_id, COUNT(*) FROM {Inode._meta.db_table} "  # noqa: S608
           "WHERE parent_id IN ({}) GROUP BY parent_id")


@functools.cache
def _sql(template: str, count: int) -> str:
    """`template` with its IN ({}) holding `count` placeholders."""
    return template.format(", ".join(["%s"] * count))


@functools.cache
def _listing_sql(where: str, vendor: str) -> str:
    """The SELECT of `_ListingRow`s. On SQLite mtime comes back as its stored text."""
    user_table = Inode._meta.get_field("owner").related_model._meta.db_table
    group_table = Inode._meta.get_field("group").related_model._meta.db_table
    not_inode_columns = {"owner_name": "u.username", "group_name": "g.name",
                         "mtime": "CAST(i.mtime AS TEXT)" if vendor == "sqlite" else "i.mtime"}
    columns = ", ".join(not_inode_columns.get(name, f"i.{name}") for name in _ListingRow._fields)
    return (f"SELECT {columns} "  # noqa: S608 - names from _meta and _ListingRow only
            f"FROM {Inode._meta.db_table} i JOIN {user_table} u ON u.id = i.owner_id "
            f"LEFT JOIN {group_table} g ON g.id = i.group_id WHERE {where}")


def _connection() -> BaseDatabaseWrapper:
    return connections[router.db_for_read(Inode)]


def _rows(sql: str, params: list) -> list[tuple]:
    with _connection().cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _listing_rows(where: str, params: list) -> list[tuple]:
    """The rows (in `_ListingRow`'s order) of the listing query with this WHERE clause."""
    return _rows(_listing_sql(where, _connection().vendor), params)


# The fields read of every row of a small directory, by their positions in _ListingRow.
_TYPE, _PARENT_ID = _ListingRow._fields.index("type"), _ListingRow._fields.index("parent_id")


def _files_first(rows: list[tuple]) -> list[tuple]:
    """A directory's rows (by name, in the database's collation) with its files first: the
    sort is stable, so each type keeps the database's order."""
    return sorted(rows, key=_is_directory)


def _is_directory(row: tuple) -> bool:
    return row[_TYPE] == InodeType.DIRECTORY


def _entry(row: tuple) -> Entry:
    """The entry of a listing row (every row listed passes here, once)."""
    _id, _parent_id, _owner_id, _group_id, name, path, kind, size, mode, owner, group, mtime = row
    if type(mtime) is str and len(mtime) in (19, 26) and mtime[10] == " ":
        text = f"{mtime[:10]}T{mtime[11:19]}Z"  # SQLite's text of a naive UTC time
    else:
        if isinstance(mtime, str):
            mtime = datetime.fromisoformat(mtime)
        if mtime.tzinfo is None:
            mtime = mtime.replace(tzinfo=UTC)
        text = mtime.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return (name, path, kind, size, mode, owner, group or "", text)


def on_current_version(look_up: Callable[[], Inode], attempt: Callable[[Inode], T], *,
                       first: Inode | None = None) -> T:
    """`attempt(look_up())`, or `attempt(first)` if the caller has looked the file up already.
    `attempt` opens the file's bytes and builds all it sends from that one inode (size, ETag,
    Range). If the bytes were replaced before they could be opened (an overwrite, a move to
    other storage or a delete removes the old blob right after its commit, which may fall
    between the lookup and the open, on this node, a peer or S3), the path is looked up again:
    the new version is served, a deleted file answers `look_up`'s 404. Once a blob is open its
    version is sent to the end (an unlinked local file stays readable; a peer or S3 streams
    what it opened). Each lost try means another writer committed; after READ_ATTEMPTS, 503
    (BytesReplaced: try again)."""
    inode = look_up() if first is None else first
    for _ in range(READ_ATTEMPTS - 1):
        try:
            return attempt(inode)
        except BytesReplaced:
            logger.debug("the bytes of %s were replaced as they were opened; looking again",
                         inode.path)
        inode = look_up()
    return attempt(inode)


def open_file(user: User, inode: Inode, start: int = 0, length: int | None = None) -> BinaryIO:
    """Open a file's bytes for streaming, after every check (nothing can become JSON later).
    BytesReplaced if the inode is no longer current: see `on_current_version`."""
    with _reading(user, inode, "open"):
        return open_copy(inode, start, length)


def read_file(user: User, inode: Inode, start: int, length: int) -> bytes:
    """A small range of a file's bytes at once, after the same checks as open_file."""
    with _reading(user, inode, "read"):
        data = read_copy(inode, start, length)
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
        with backend_call(inode.backend, operation):
            yield
    except FileNotFoundError:
        raise missing_bytes(inode) from None
    record_file_operation("read", inode.backend)

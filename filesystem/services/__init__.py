"""Filesystem operations: the only code that mixes metadata, bytes and locks.

Each verb writes bytes before metadata and commits the metadata under `distributed_lock` in one
transaction, with the rows it changes (and the directory it inserts into) locked FOR UPDATE, so
concurrent creates, moves and deletes cannot tear the tree. Every verb that changes the tree
authorises through one function, `authorise.authorise(user, path, check)`, and makes its one
`Check` twice: before anything moves, so that a refusal costs nothing, and again `locked`, on
the locked entry, which alone decides, since another request may have replaced the entry or
changed its rights in between (a small upload, stored first, is checked once: under the lock).
Blobs replaced or deleted are removed only after the transaction commits; a reader that looked
the file up just before may then find its blob gone, and looks again (`on_current_version`).

The modules, each building on the ones before it, each naming what it offers the others in
`__all__`: `common` (FileInfo, modes, this node, how the database locks), `blobs` (backends,
peers, storing, copying and discarding bytes), `lookup` (resolving paths with `x` on every
ancestor, listings, opening files), `authorise` (the check before and under the lock), `create`
(mkdir, POST, PUT, copy, and the locked parent directory a new entry goes into), `namespace`
(delete, move, chmod/chown). This package hands on the verbs the API, the admin and links use.
"""

from filesystem.services.common import Precondition, file_info, format_time
from filesystem.services.create import copy_file, create_file, make_directory, write_file
from filesystem.services.lookup import (
    Listing,
    list_children,
    list_directory,
    on_current_version,
    open_file,
    read_file,
    resolve,
    stat,
)
from filesystem.services.namespace import change_metadata, delete, move

__all__ = [
    "Listing",
    "Precondition",
    "change_metadata",
    "copy_file",
    "create_file",
    "delete",
    "file_info",
    "format_time",
    "list_children",
    "list_directory",
    "make_directory",
    "move",
    "on_current_version",
    "open_file",
    "read_file",
    "resolve",
    "stat",
    "write_file",
]

"""Filesystem operations: the only code that mixes metadata, bytes and locks.

Each verb authorises through `filesystem.access`, writes bytes before metadata, and commits the
metadata under `distributed_lock` in one transaction, with the rows it changes (and the directory
it inserts into) locked FOR UPDATE, so concurrent creates, moves and deletes cannot tear the tree.
Every check is made twice: before anything moves, so that a refusal costs nothing, and again on
the locked rows, which alone decide, since another request may have replaced the entry or changed
its rights in between (`namespace._checked`; `create._commit` for uploads and copies).
Blobs replaced or deleted are removed only after the transaction commits; a reader that looked
the file up just before may then find its blob gone, and looks again (`on_current_version`).

The modules, each building on the ones before it: `common` (FileInfo, modes, re-reading under a
lock), `blobs` (backends, peers, storing and moving bytes), `lookup` (resolving paths, listings,
opening files), `create` (mkdir, POST, PUT, copy), `namespace` (delete, move, chmod/chown).
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

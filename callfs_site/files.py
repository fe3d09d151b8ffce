"""File-system calls that the SQLite backend, the host-local locks, the local-disk storage and
the configuration share: fsync by name, off the event loop, and an exclusive flock() that waits
for a bounded time."""

from __future__ import annotations

import errno
import fcntl
import os
import time

from callfs_site import offload


def fsync_path(path: str | os.PathLike[str], flags: int = os.O_RDONLY) -> None:
    """fsync the file at `path` (a directory with O_DIRECTORY in `flags`). Under the gevent
    worker the wait for the disk runs on a pool thread, so other requests go on meanwhile."""
    fd = os.open(path, flags)
    try:
        offload.run(os.fsync, fd)
    finally:
        os.close(fd)


def fsync_directory(path: str | os.PathLike[str]) -> None:
    """Make the entries of a directory durable: a name created or renamed in it survives a crash
    only once its directory is fsynced."""
    fsync_path(path, os.O_RDONLY | os.O_DIRECTORY)


def flock_within(fd: int, deadline: float, first_pause: float, longest_pause: float) -> bool:
    """Take an exclusive flock on `fd`, trying again after pauses that double from `first_pause`
    up to `longest_pause`; False if it is still held at `deadline` (a time.monotonic() value).
    Polled because a blocking flock() would stop a gevent worker's event loop, and could never
    give up."""
    pause = first_pause
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
        if time.monotonic() >= deadline:
            return False
        time.sleep(pause)
        pause = min(pause * 2, longest_pause)

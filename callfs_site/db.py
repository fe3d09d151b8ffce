"""Database connections while request and response bodies move.

Django keeps a connection per thread (per greenlet under the gevent worker) until the request
ends, and a request ends only when the last byte of its response has gone out: a download read
at 128 KiB/s holds its connection for the whole transfer, an upload for all of its body.

- PostgreSQL connections come from a small pool per worker (callfs_site.config), SQLite ones
  from the backend's own pool per process (callfs_site.sqlite): one held by a slow client is
  one the next request waits for (measured: BENCHMARKS.md, tenth session). A pooled
  connection goes back as soon as the view has answered and before a request body is read:
  giving it back and taking it again costs little (BENCHMARKS.md).
- A connection without a pool (none in the shipped configurations) is closed only before a
  long transfer, of LONG_TRANSFER_BYTES or more: hundreds of slow clients would otherwise hold
  hundreds of them.

A request's next query, if any (an upload's commit), opens or borrows a connection again.
"""

from __future__ import annotations

import sqlite3

from django.db import connections
from django.db.utils import OperationalError

LONG_TRANSFER_BYTES = 1024 * 1024
LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL's SQLSTATE when lock_timeout runs out


class LockWaitTimeout(OperationalError):
    """A database lock was not free within CALLFS_LOCK_TIMEOUT (callfs_site.sqlite's turn to
    write)."""


def is_lock_wait_timeout(exc: BaseException) -> bool:
    """Did a query give up waiting for a lock another transaction holds: SQLite's turn to
    write or busy timeout, or PostgreSQL's lock_timeout (all CALLFS_LOCK_TIMEOUT, set in
    callfs_site.config)? Such a request gets 503 LOCK_TIMEOUT, as a path lock's wait does."""
    cause = exc.__cause__
    return (isinstance(exc, LockWaitTimeout)
            or getattr(cause, "sqlstate", None) == LOCK_NOT_AVAILABLE
            or getattr(cause, "sqlite_errorcode", None) == sqlite3.SQLITE_BUSY)


def release_connections(*, long_transfer: bool) -> None:
    """Give back this thread's pooled database connections, and close the others too when a
    long transfer follows; never one inside a transaction. Before a short wait or a short
    answer, an SQLite connection is parked instead: kept for this greenlet's next query unless
    its pool lends it to another one meanwhile (callfs_site.sqlite)."""
    for connection in connections.all(initialized_only=True):
        if connection.in_atomic_block:
            continue
        if not long_transfer and hasattr(connection, "park"):
            connection.park()
        elif long_transfer or getattr(connection, "pool", None) is not None:
            connection.close()

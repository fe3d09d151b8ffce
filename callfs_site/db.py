"""Database connections and long transfers.

Django keeps a connection per thread (per greenlet under the gevent worker) until the request
ends, and a request moving a large body ends only when its last byte does: at 128 KiB/s a
4 MiB file holds a connection for half a minute. Hundreds of such clients would hold hundreds of
PostgreSQL connections (past its max_connections) or SQLite handles. A transfer that long
releases its connections before the body moves; the request's next query, if any (an upload's
commit), opens one again, a fraction of a millisecond against the transfer.
"""

from __future__ import annotations

from django.db import connections

# Bodies at least this large give up the database while they move; smaller ones are over
# sooner than reopening a connection would pay off.
LONG_TRANSFER_BYTES = 1024 * 1024


def release_connections() -> None:
    """Close this thread's database connections, except one inside a transaction."""
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close()

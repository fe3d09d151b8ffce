"""`distributed_lock()`: exclusive, bounded-wait locks on names such as paths.

Without `REDIS_URL` the locks are host-local file locks (flock) under the data directory, so the
gunicorn workers and threads of one node agree. With `REDIS_URL` they are redis-py locks through
django-redis, shared by every node. Waiting is bounded: past the timeout the caller gets 503
`LOCK_TIMEOUT`; an unreachable Redis gives 503 `SERVICE_UNAVAILABLE`, never a 500. While held,
each name counts in the `callfs_active_locks` gauge.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from django.conf import settings

from callfs_site.db import release_connections
from callfs_site.errors import LockTimeout, ServiceUnavailable
from callfs_site.files import flock_within
from callfs_site.metrics import ACTIVE_LOCKS, LOCK_TIMEOUTS, LOCK_WAIT, series

logger = logging.getLogger(__name__)

# Host-local locks hash names onto a fixed set of lock files: bounded disk use, no cleanup needed.
# Two names may share a stripe; that only makes them wait for each other, and acquiring a set of
# names stripe by stripe in sorted order keeps that deadlock-free.
LOCK_STRIPES = 4096
# How often a waiter tries a held lock file again: from every 0.5 ms, backing off to 20 ms.
_POLL_FIRST, _POLL_MAX = 0.0005, 0.02
# A Redis lock's lease outlives any metadata commit by far; it only guards against a dead holder.
REDIS_LEASE_SECONDS = 120


def _stripe(name: str) -> int:
    return int.from_bytes(hashlib.blake2b(name.encode("utf-8", "surrogatepass"),
                                          digest_size=8).digest(), "big") % LOCK_STRIPES


@contextmanager
def _file_lock(directory: Path, stripe: int, deadline: float) -> Iterator[None]:
    path = directory / f"{stripe:04x}.lock"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except FileNotFoundError:
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if not flock_within(fd, deadline, _POLL_FIRST, _POLL_MAX):
            raise LockTimeout()
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock


@contextmanager
def _redis_lock(name: str, deadline: float) -> Iterator[None]:
    from django.core.cache import caches
    from redis.exceptions import LockError, RedisError

    try:
        lock = caches["locks"].lock(f"path:{name}", timeout=REDIS_LEASE_SECONDS,
                                    blocking_timeout=max(deadline - time.monotonic(), 0.001))
        acquired = lock.acquire()
    except RedisError as exc:
        logger.warning("redis unavailable while locking: %s", exc)
        raise ServiceUnavailable("the lock service (Redis) is unavailable") from None
    if not acquired:
        raise LockTimeout()
    try:
        yield
    finally:
        try:
            lock.release()
        except (LockError, RedisError) as exc:  # lease expired or Redis gone: it frees itself
            logger.warning("could not release lock %s: %s", name, exc)


@contextmanager
def distributed_lock(*names: str, timeout: float | None = None) -> Iterator[None]:
    """Hold exclusive locks on all `names` at once; wait at most `timeout` seconds for them."""
    # Never wait holding a pooled database connection: with all of them held by waiters, the
    # holder of the lock could not get one to finish (callfs_site.db).
    release_connections(long_transfer=False)
    wait = settings.CALLFS.lock_timeout if timeout is None else timeout
    started = time.monotonic()
    deadline = started + wait
    kind = "redis" if settings.CALLFS.redis_url else "file"
    with ExitStack() as stack:
        try:
            if kind == "redis":
                for name in sorted(set(names)):
                    stack.enter_context(_redis_lock(name, deadline))
            else:
                directory = settings.CALLFS.data_dir / "locks"
                for stripe in sorted({_stripe(name) for name in names}):
                    stack.enter_context(_file_lock(directory, stripe, deadline))
        except LockTimeout:
            series(LOCK_TIMEOUTS, kind).inc()
            raise
        finally:
            series(LOCK_WAIT, kind).observe(time.monotonic() - started)
        held = len(set(names))
        ACTIVE_LOCKS.inc(held)
        try:
            yield
        finally:  # before the ExitStack releases them: never counted after release
            ACTIVE_LOCKS.dec(held)

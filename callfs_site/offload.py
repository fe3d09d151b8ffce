"""Work that must leave the worker's event loop: fsync, and the hashing and writing of a large
upload.

Under gunicorn's gevent worker (callfs_site.workers) all of a worker's connections are greenlets
on one OS thread: a call that blocks in the kernel (fsync waits for the disk) or computes for
long in C (sha256 of a large upload) stops every other connection of that worker meanwhile.
Such calls go to a small pool of real OS threads, and the greenlet that asked waits for them
cooperatively. Outside gevent (tests, management commands) the same calls run on plain threads,
or inline for `run()`, with the same results.

The pool's threads leave the worker's CPU pin (callfs_site.cpus): hashing and writing run on
the other core while the loop keeps receiving.
"""

from __future__ import annotations

import concurrent.futures
import os
import threading
from collections.abc import Callable
from typing import TypeVar

from callfs_site.cpus import unpin_thread

T = TypeVar("T")
# Two per concurrent large upload (one hashing, one writing) plus fsyncs: more threads would only
# queue on the disk and the GIL.
POOL_THREADS = 8

_pool: concurrent.futures.Executor | None = None
_pool_pid = 0
_pool_lock = threading.Lock()
_patched = False  # once gevent has patched threading, it stays patched


def on_event_loop() -> bool:
    """Is this process a gevent worker (threading monkey-patched into greenlets)?"""
    global _patched
    if not _patched:
        from gevent import monkey

        _patched = monkey.is_module_patched("threading")
    return _patched


def pool() -> concurrent.futures.Executor:
    """This process's pool of real OS threads (made on first use, again after a fork)."""
    global _pool, _pool_pid
    with _pool_lock:
        if _pool is None or _pool_pid != os.getpid():
            if on_event_loop():
                from gevent.threadpool import ThreadPoolExecutor
            else:
                ThreadPoolExecutor = concurrent.futures.ThreadPoolExecutor  # noqa: N806
            _pool = ThreadPoolExecutor(POOL_THREADS, thread_name_prefix="callfs-offload")
            _pool_pid = os.getpid()
        return _pool


def _unpinned(fn: Callable[..., T], *args) -> T:
    unpin_thread()  # one cheap syscall: cheaper than tracking which pool thread did it already
    return fn(*args)


def submit(fn: Callable[..., T], *args) -> concurrent.futures.Future[T]:
    """Start `fn(*args)` on a pool thread; the future's result() waits without blocking the
    event loop."""
    return pool().submit(_unpinned, fn, *args)


def run(fn: Callable[..., T], *args) -> T:
    """`fn(*args)`, off the event loop when there is one (inline otherwise: a thread hop would
    only add latency where nothing else waits)."""
    if not on_event_loop():
        return fn(*args)
    return submit(fn, *args).result()


def take_turns() -> None:
    """Between the pieces of a long operation (a rename or delete of a large tree: many
    statements, seconds in all), let the worker's other connections run: under the gevent
    worker nothing else on it moves while a greenlet computes or waits on SQLite. Outside
    gevent, nothing to do."""
    if on_event_loop():
        import gevent

        gevent.sleep(0)

"""SQLite for many concurrent writers, each commit durable before the 2xx.

Django's SQLite backend, changed where concurrent small uploads measured it (BENCHMARKS.md):

* **Writers take turns on a lock file.** SQLite admits one writer and makes the others wait in
  its busy handler, which polls with sleeps of 1, 2, 5 ... 100 ms: the write lock sat free while
  every waiter slept. A write transaction (`BEGIN IMMEDIATE`, see callfs_site.config) first
  takes an flock on `<database>.writers`, polled every 0.1 ms, backing off to 1 ms
  (callfs_site.files.flock_within), so a waiting writer takes it soon after a commit or
  rollback. There is no queue: whichever waiter polls first goes next. Each connection (Django
  keeps one per thread) has its own descriptor, so threads exclude each other as well as
  processes.
* **The commit is flushed after the lock is released.** `synchronous=FULL` would fsync the WAL
  inside the write lock, one commit at a time: that flush capped the rate of uploads. The
  connection runs with `synchronous=NORMAL` (appends to the WAL without flushing) and every
  committed write transaction then has the WAL fsynced before returning, outside the lock. A
  commit is thus durable before its caller answers, as with FULL; the difference is that other
  connections may read it during that flush. Checkpoints are unaffected: SQLite syncs the WAL
  before copying it and the database after.
* **Commits share flushes (group commit).** A commit that finds its process flushing the WAL
  waits for that fsync and the next one begun after it covers every commit that waited
  (`WalFlushes`): under the gevent worker most small uploads' commits need no fsync of their
  own, and no trip to the offload pool for it.
* **Writes outside a transaction are flushed too.** A statement that changed rows in autocommit
  mode (no `transaction.atomic()`: an admin's revocation, say) fsyncs the WAL before it returns,
  like a commit.
* **Placeholders are converted once per statement text.** Django rewrites every query's `%s`
  to SQLite's `?` with a regular expression, on every execution; the same few statements run
  for every request, so their converted text is kept.
* **Connections are pooled per process.** Under the gevent worker every client connection is a
  thread of its own to Django, and an SQLite connection holds memory (its schema, page cache
  and registered functions) that the allocator keeps after it closes: a worker grew with every
  client it served at once. A request borrows one of at most POOL_SIZE open connections
  (waiting for one when all are out) and gives it back when it ends, or before a body moves
  (callfs_site.db); borrowing skips the open, the PRAGMAs and the function registrations.
* **Checkpoints run outside the lock too.** SQLite's automatic checkpoint runs inside the commit
  that crosses 1,000 pages, i.e. while that writer holds the lock, and every other writer waited
  for it (the slowest small uploads were those). It is off; instead, after a commit, a passive
  checkpoint runs at most once a second per process, when the lock is already free.
"""

from __future__ import annotations

import fcntl
import functools
import logging
import os
import threading
import time

from django.db.backends.sqlite3 import base
from django.db.backends.sqlite3.base import Database
from django.db.utils import OperationalError

from callfs_site import offload
from callfs_site.db import LockWaitTimeout
from callfs_site.files import flock_within, fsync_directory, fsync_path

logger = logging.getLogger(__name__)

WAIT_SECONDS = 30  # for a free connection; and to write, unless OPTIONS give a timeout
_POLL_FIRST, _POLL_MAX = 0.0001, 0.001
CHECKPOINT_SECONDS = 1.0
PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", "PRAGMA wal_autocheckpoint=0")
# Per process: one passive checkpoint a second is plenty. It starts at -inf, not 0.0: the
# monotonic clock counts from boot, so 0.0 would put off the first checkpoint on a machine up
# for less than CHECKPOINT_SECONDS.
_last_checkpoint = float("-inf")
# Statements longer than this (a bulk IN list, say) are converted every time, not kept.
_CACHED_QUERY_CHARS = 4096
POOL_SIZE = 10  # open connections per process; a request holds one only while it queries


class WalFlushes:
    """The WAL flushes of one process, shared by its commits: a commit is durable once an fsync
    of the WAL that began after the commit returned has finished. A committer that finds a
    flush under way waits for it, then finds its commit covered (a flush begun after it has
    finished) or starts the next one, for itself and everyone who committed meanwhile. Measured
    under the gevent worker: 69% of small uploads' commits needed no fsync of their own
    (BENCHMARKS.md, thirteenth session). After a failed fsync every later flush of that WAL
    fails too: a retry may succeed once the kernel has dropped the unwritten pages
    (`DatabaseWrapper._flush_wal`). Forgotten in a forked child, as the pool is."""

    class _Wal:
        __slots__ = ("lock", "begun", "done", "failed")

        def __init__(self) -> None:
            self.lock = threading.Lock()  # made at first use: gevent patches threading later
            self.begun = self.done = 0  # flushes begun; the number of the last one finished
            self.failed: OSError | None = None

    def __init__(self) -> None:
        self._wals: dict[str, WalFlushes._Wal] = {}
        os.register_at_fork(after_in_child=self._wals.clear)

    def flush(self, path: str) -> None:
        wal = self._wals.get(path) or self._wals.setdefault(path, self._Wal())
        arrived = wal.begun  # read after the commit: every flush begun later covers it
        with wal.lock:
            if wal.failed is not None:
                raise OSError(wal.failed.errno, f"an earlier flush failed: {wal.failed}")
            if wal.done > arrived:
                return
            wal.begun += 1
            number = wal.begun
            try:
                fsync_path(path)
            except FileNotFoundError:
                raise  # no WAL (not in WAL mode): nothing failed
            except OSError as exc:
                wal.failed = exc
                raise
            wal.done = number


WAL_FLUSHES = WalFlushes()


class ConnectionPool:
    """The open sqlite3 connections of one process, lent to one thread (greenlet) at a time:
    at most `size` are out, parked or idle. Made anew in a forked child (connections do not
    survive fork).

    A connection may stay *parked* with the greenlet that borrowed it between its requests (a
    keep-alive client's next request then skips Django's connect and close): a borrower that
    finds no free slot takes the longest-parked one instead of waiting, and nobody parks while
    someone waits."""

    def __init__(self, size: int):
        self.size = size
        self._ready = False
        self._lock = self._slots = None
        self._idle: dict[str, list] = {}  # database file -> idle connections
        self._parked: dict[DatabaseWrapper, tuple[str, Database.Connection]] = {}
        self._waiting = 0
        # A flag, not a pid compared on every call: os.getpid() is a system call each time.
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._ready, self._idle, self._parked, self._waiting = False, {}, {}, 0

    def _current(self) -> None:
        if not self._ready:
            self._lock = threading.Lock()  # made here: gevent patches threading after import
            self._slots = threading.BoundedSemaphore(self.size)
            self._ready = True

    def borrow(self, name: str, open_new) -> Database.Connection:
        """An idle connection to `name`, or `open_new()`; with no slot free, a parked one taken
        from its greenlet, else waits for a slot."""
        self._current()
        if not self._slots.acquire(blocking=False):
            taken = self._take_parked()
            if taken is not None:
                parked_name, connection = taken
                if parked_name == name:
                    return connection
                connection.close()  # another database's: its slot serves this one
                return self._open_in_slot(open_new)
            with self._lock:
                self._waiting += 1
            try:
                free = self._slots.acquire(timeout=WAIT_SECONDS)
            finally:
                with self._lock:
                    self._waiting -= 1
            if not free:
                raise OperationalError(f"no database connection free within {WAIT_SECONDS} s")
        try:
            with self._lock:
                idle = self._idle.get(name)
                if idle:
                    return idle.pop()
        except BaseException:
            self._slots.release()
            raise
        return self._open_in_slot(open_new)

    def _open_in_slot(self, open_new) -> Database.Connection:
        try:
            return open_new()
        except BaseException:
            self._slots.release()
            raise

    def give_back(self, name: str, connection: Database.Connection) -> None:
        """Return a borrowed connection (rolled back if a transaction was left open)."""
        self._current()
        try:
            if connection.in_transaction:
                connection.rollback()
            with self._lock:
                self._idle.setdefault(name, []).append(connection)
        except Database.Error:  # broken: never lend it again
            connection.close()
        finally:
            self._slots.release()

    def park(self, wrapper: DatabaseWrapper) -> bool:
        """Let `wrapper` keep its connection until its next query, lendable meanwhile; False
        (give it back instead) while another borrower waits for a slot."""
        with self._lock:
            if self._waiting:
                return False
            self._parked[wrapper] = (wrapper.settings_dict["NAME"], wrapper.connection)
        return True

    def unpark(self, wrapper: DatabaseWrapper) -> None:
        with self._lock:
            self._parked.pop(wrapper, None)

    def _take_parked(self) -> tuple[str, Database.Connection] | None:
        with self._lock:
            if not self._parked:
                return None
            wrapper = next(iter(self._parked))
            taken = self._parked.pop(wrapper)
        wrapper.lose_parked_connection()
        return taken


POOL = ConnectionPool(POOL_SIZE)


def _stop_process() -> None:
    logging.shutdown()
    os._exit(70)  # EX_SOFTWARE; no exception: nothing may clean up as if the commit had failed


class DurableCursor(base.SQLiteCursorWrapper):
    """Flushes the WAL after a statement that changed rows on its own (autocommit). A statement
    with RETURNING commits only once it is finished (rows fetched, or the cursor closed), so the
    check runs after those too."""

    flush_wal = None  # DatabaseWrapper._make_durable, set by DatabaseWrapper.create_cursor
    _changes = 0

    def convert_query(self, query, *, param_names=None):
        if param_names is None and len(query) <= _CACHED_QUERY_CHARS:
            return _qmark_query(query)
        return super().convert_query(query, param_names=param_names)

    def execute(self, query, params=None):
        self._changes = self.connection.total_changes
        result = super().execute(query, params)
        self._flush_if_autocommitted()
        return result

    def executemany(self, query, param_list):
        self._changes = self.connection.total_changes
        result = super().executemany(query, param_list)
        self._flush_if_autocommitted()
        return result

    def fetchone(self):
        row = super().fetchone()
        self._flush_if_autocommitted()
        return row

    def fetchmany(self, size=None):
        rows = super().fetchmany(size) if size is not None else super().fetchmany()
        self._flush_if_autocommitted()
        return rows

    def fetchall(self):
        rows = super().fetchall()
        self._flush_if_autocommitted()
        return rows

    def close(self):
        super().close()
        self._flush_if_autocommitted()

    def _flush_if_autocommitted(self) -> None:
        connection = self.connection
        if not connection.in_transaction and connection.total_changes != self._changes:
            self._changes = connection.total_changes
            self.flush_wal()


@functools.lru_cache(maxsize=512)
def _qmark_query(query: str) -> str:
    """Django's "format" to "qmark" conversion (SQLiteCursorWrapper.convert_query), memoised."""
    return base.FORMAT_QMARK_REGEX.sub("?", query).replace("%%", "%")


class DatabaseWrapper(base.DatabaseWrapper):
    _writer_fd: int | None = None
    _writing = False
    _parked = False
    pool = POOL  # callfs_site.db gives pooled connections back before bodies move
    _lender = POOL

    def park(self) -> None:
        """Between requests, or while a body moves (callfs_site.db): under the gevent worker,
        keep the connection for this greenlet's next query, which then skips Django's connect
        and close, unless the pool lends it to another greenlet meanwhile (the next query then
        borrows anew); elsewhere, give it back."""
        if self.connection is None or self.in_atomic_block or self._parked:
            return
        if self.is_in_memory_db() or not offload.on_event_loop() \
                or not self._lender.park(self):
            self.close()
            return
        self._parked = True

    def lose_parked_connection(self) -> None:
        """The pool lent this wrapper's parked connection to another greenlet."""
        self._parked = False
        self.connection = None

    def ensure_connection(self):
        if self._parked:  # every query comes through here first
            self._parked = False
            self._lender.unpark(self)
        super().ensure_connection()

    def close_if_unusable_or_obsolete(self):
        if not self._parked:  # parked: kept on purpose (CONN_MAX_AGE=0 would close it)
            super().close_if_unusable_or_obsolete()

    def create_cursor(self, name=None):
        cursor = self.connection.cursor(factory=DurableCursor)
        cursor.flush_wal = self._make_durable
        return cursor

    def get_new_connection(self, conn_params):
        if self.is_in_memory_db():  # the tests' database: one connection, never pooled
            return self._open(conn_params)
        self._lender = self.pool  # given back to the pool it came from
        return self._lender.borrow(self.settings_dict["NAME"], lambda: self._open(conn_params))

    def _open(self, conn_params):
        connection = super().get_new_connection(conn_params)
        for pragma in PRAGMAS:
            connection.execute(pragma)
        if not self.is_in_memory_db():
            # The WAL file may have just been created: make its directory entry durable too
            # (SQLite's FULL mode syncs the directory once for the same reason).
            fsync_directory(os.path.dirname(os.path.abspath(self.settings_dict["NAME"])))
        return connection

    def _take_writer_lock(self) -> None:
        if self.is_in_memory_db():
            return
        if self._writer_fd is None:
            self._writer_fd = os.open(f"{self.settings_dict['NAME']}.writers",
                                      os.O_RDWR | os.O_CREAT, 0o600)
        # As long as SQLite's own busy timeout: CALLFS_LOCK_TIMEOUT (callfs_site.config).
        wait = self.settings_dict["OPTIONS"].get("timeout", WAIT_SECONDS)
        if not flock_within(self._writer_fd, time.monotonic() + wait, _POLL_FIRST, _POLL_MAX):
            raise LockWaitTimeout(f"database is locked (no turn to write within {wait} s)")
        self._writing = True

    def _release_writer_lock(self) -> None:
        if self._writing:
            self._writing = False
            fcntl.flock(self._writer_fd, fcntl.LOCK_UN)

    def _start_transaction_under_autocommit(self):
        self._take_writer_lock()
        try:
            super()._start_transaction_under_autocommit()
        except BaseException:
            self._release_writer_lock()
            raise

    def _commit(self):
        wrote = self._writing
        try:
            super()._commit()
        finally:
            self._release_writer_lock()
        if wrote:
            self._make_durable()

    def _make_durable(self) -> None:
        """After a write commits: flush it, and now and then checkpoint (an idle node's only
        writes, heartbeats outside transactions, would otherwise grow the WAL forever)."""
        self._flush_wal()
        self._checkpoint_now_and_then()

    def _flush_wal(self) -> None:
        """fsync the WAL by name: this connection keeps it from being deleted meanwhile.

        A failed fsync leaves a commit that others may already read but that may never reach
        the disk, and a later fsync can succeed after the kernel dropped those pages: like
        PostgreSQL, the process stops rather than answer for it (gunicorn starts a new worker,
        which reads the database back from disk)."""
        if self.is_in_memory_db():
            return
        try:
            WAL_FLUSHES.flush(f"{self.settings_dict['NAME']}-wal")
        except FileNotFoundError:
            pass  # not in WAL mode: SQLite synced the commit itself
        except OSError as exc:
            logger.critical("fsync of the SQLite WAL failed (%s): stopping this process", exc)
            _stop_process()

    def _checkpoint_now_and_then(self) -> None:
        global _last_checkpoint
        now = time.monotonic()
        if now - _last_checkpoint >= CHECKPOINT_SECONDS:
            _last_checkpoint = now
            try:  # PASSIVE: copies what it can without waiting for readers or writers
                self.connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except Database.OperationalError as exc:  # the commit stands; the next one retries
                logger.warning("SQLite checkpoint failed: %s", exc)

    def _rollback(self):
        try:
            super()._rollback()
        finally:
            self._release_writer_lock()

    def _close(self):
        if self._parked:
            self._parked = False
            self._lender.unpark(self)
        try:
            if self.is_in_memory_db() or self.connection is None:
                super()._close()
            else:
                self._lender.give_back(self.settings_dict["NAME"], self.connection)
        finally:
            self._release_writer_lock()
            if self._writer_fd is not None:
                os.close(self._writer_fd)
                self._writer_fd = None

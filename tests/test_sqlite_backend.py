"""callfs_site.sqlite: writers queue on a lock file, and each commit is flushed before it returns.

These open their own SQLite files (the test database lives in memory, where neither applies),
with the settings CALLFS derives from DATABASE_URL.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from functools import partial

import pytest
from django.db.utils import ConnectionHandler, OperationalError

from callfs_site.config import load_config
from callfs_site.sqlite import base as sqlite_backend
from tests.helpers import run_in_threads


@pytest.fixture(params=["plain", "with CALLFS_DB_METRICS"])
def open_connection(request, tmp_path, django_db_blocker):
    """Connections (one per call, as Django has one per thread) to a fresh SQLite file, through
    the backend and through its django-prometheus variant."""
    environment = {"DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3"}
    if request.param != "plain":
        environment["CALLFS_DB_METRICS"] = "1"
    settings = load_config(environment).database
    assert settings["ENGINE"].startswith("callfs_site.sqlite")
    opened = []

    def connect():
        connection = ConnectionHandler({"default": dict(settings)})["default"]
        opened.append(connection)
        return connection

    with django_db_blocker.unblock():
        first = connect()
        with first.cursor() as cursor:
            cursor.execute("CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT UNIQUE)")
        yield connect
        for connection in opened:
            if connection._thread_ident == threading.get_ident():
                connection.close()  # threads close their own


def write(connection, name: str, *, fail: bool = False) -> None:
    """One write transaction, the way transaction.atomic() drives the backend."""
    connection.set_autocommit(False, force_begin_transaction_with_broken_autocommit=True)
    try:
        with connection.cursor() as cursor:
            cursor.execute("INSERT INTO item (name) VALUES (%s)", [name])
        if fail:
            raise RuntimeError("the caller gave up")
        connection.commit()
    except BaseException:
        connection.rollback()
        raise
    finally:
        connection.set_autocommit(True)


def count(connection) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM item")
        return cursor.fetchone()[0]


def test_concurrent_writers_all_commit(open_connection):
    errors = []

    def writer(index: int) -> None:
        connection = open_connection()
        try:
            for n in range(25):
                write(connection, f"w{index}-{n}")
        except Exception as exc:  # reported below: no "database is locked" may escape
            errors.append(exc)
        finally:
            connection.close()

    run_in_threads(*(partial(writer, i) for i in range(8)))
    assert errors == []
    assert count(open_connection()) == 200


def test_the_writer_lock_passes_on_after_commit_and_after_rollback(open_connection):
    first, second = open_connection(), open_connection()
    write(first, "a")
    with pytest.raises(RuntimeError):
        write(first, "b", fail=True)
    started = time.monotonic()
    write(second, "c")  # would wait WAIT_SECONDS if either left the lock held
    assert time.monotonic() - started < 1
    assert count(second) == 2


def test_a_writer_gives_up_when_the_lock_is_held_too_long(open_connection, monkeypatch):
    monkeypatch.setattr(sqlite_backend, "WAIT_SECONDS", 0.2)
    holder, waiter = open_connection(), open_connection()
    holder.set_autocommit(False, force_begin_transaction_with_broken_autocommit=True)
    try:
        with pytest.raises(OperationalError, match="database is locked"):
            write(waiter, "late")
    finally:
        holder.rollback()
        holder.set_autocommit(True)
    write(waiter, "now")  # the lock is free again
    assert count(waiter) == 1


def test_each_write_commit_flushes_the_wal_after_releasing_the_lock(open_connection,
                                                                    monkeypatch):
    connection = open_connection()
    count(connection)  # connect first: opening also syncs the directory once
    flushed = []

    def record(path, flags=0):
        flushed.append((path, connection._writing))

    monkeypatch.setattr(sqlite_backend, "fsync_path", record)
    write(connection, "durable")
    assert flushed == [(f"{connection.settings_dict['NAME']}-wal", False)]
    flushed.clear()
    with pytest.raises(RuntimeError):
        write(connection, "abandoned", fail=True)
    assert flushed == []  # nothing to make durable


def test_a_write_outside_a_transaction_is_flushed_before_it_returns(open_connection,
                                                                     monkeypatch):
    connection = open_connection()
    count(connection)
    flushed = []
    monkeypatch.setattr(sqlite_backend, "fsync_path", lambda path, flags=0: flushed.append(path))
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM item")
        assert flushed == []  # reads flush nothing
        cursor.execute("INSERT INTO item (name) VALUES (%s)", ["autocommitted"])
        assert flushed == [f"{connection.settings_dict['NAME']}-wal"]
        cursor.execute("UPDATE item SET name = %s WHERE name = %s", ["x", "no such row"])
        assert len(flushed) == 1  # nothing changed, nothing to flush
        cursor.executemany("INSERT INTO item (name) VALUES (%s)", [["a"], ["b"]])
        assert len(flushed) == 2
        # RETURNING (every Django INSERT) commits when the statement finishes, not at execute.
        cursor.execute("INSERT INTO item (name) VALUES (%s) RETURNING id", ["returned"])
        assert cursor.fetchone()[0] > 0
    assert len(flushed) == 3  # by the time the cursor is closed
    assert count(connection) == 4


def test_a_failed_wal_flush_stops_the_process_instead_of_answering(open_connection,
                                                                   monkeypatch):
    """After a failed fsync nothing may run as if the commit had failed (and delete its blob),
    nor answer as if it were on disk: the process stops, as PostgreSQL does."""
    connection = open_connection()
    count(connection)
    stopped = []

    def failing_fsync(path, flags=0):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(sqlite_backend, "fsync_path", failing_fsync)
    monkeypatch.setattr(sqlite_backend, "_stop_process", lambda: stopped.append(True))
    write(connection, "on a failing disk")
    assert stopped == [True]


def test_commits_during_a_flush_share_the_next_one(open_connection, monkeypatch):
    """Group commit: three commits that land while a flush is under way wait for it, then one
    flush covers all three; each returns only after a flush that began after it committed."""
    connections = [open_connection() for _ in range(4)]
    for connection in connections:
        count(connection)
    committed: dict[int, float] = {}  # thread -> when its commit returned
    flushes: list[tuple[float, float]] = []  # (began, finished)
    first_began = threading.Event()
    django_commit = sqlite_backend.base.DatabaseWrapper._commit

    def commit_and_note(self):
        django_commit(self)
        committed[threading.get_ident()] = time.monotonic()

    def slow_fsync(path, flags=0):
        began = time.monotonic()
        if not flushes and not first_began.is_set():
            first_began.set()
            deadline = time.monotonic() + 10
            while len(committed) < 4 and time.monotonic() < deadline:  # the others commit
                time.sleep(0.01)
        flushes.append((began, time.monotonic()))

    monkeypatch.setattr(sqlite_backend.base.DatabaseWrapper, "_commit", commit_and_note)
    monkeypatch.setattr(sqlite_backend, "fsync_path", slow_fsync)
    returned: dict[int, float] = {}

    def writer(connection, name: str, after: threading.Event | None) -> None:
        if after is not None:
            assert after.wait(10)
        connection.inc_thread_sharing()
        write(connection, name)
        returned[threading.get_ident()] = time.monotonic()

    run_in_threads(partial(writer, connections[0], "first", None),
                   *(partial(writer, connection, f"later{n}", first_began)
                     for n, connection in enumerate(connections[1:])))
    assert len(flushes) == 2  # four commits, two fsyncs
    for thread, done in committed.items():
        assert any(done <= began and finished <= returned[thread]
                   for began, finished in flushes), (thread, committed, flushes, returned)


def test_after_a_failed_flush_no_later_flush_answers_for_a_commit(open_connection, monkeypatch):
    """A retried fsync can succeed after the kernel dropped the pages that failed: once one has
    failed, every commit that relies on the WAL being flushed fails too."""
    connection = open_connection()
    count(connection)
    stopped = []
    calls = []

    def fail_once(path, flags=0):
        calls.append(path)
        if len(calls) == 1:
            raise OSError(5, "Input/output error")

    monkeypatch.setattr(sqlite_backend, "fsync_path", fail_once)
    monkeypatch.setattr(sqlite_backend, "_stop_process", lambda: stopped.append(True))
    write(connection, "on a failing disk")
    write(connection, "after it")
    assert stopped == [True, True] and len(calls) == 1  # never tried again


NEVER = float("-inf")  # as _last_checkpoint starts: 0.0 is recent on a machine just booted


def checkpointed_rows(connection) -> int:
    """Rows in the database file itself, ignoring the WAL (immutable=1 reads only the file)."""
    with sqlite3.connect(f"file:{connection.settings_dict['NAME']}?immutable=1",
                         uri=True) as direct:
        return direct.execute("SELECT COUNT(*) FROM item").fetchone()[0]


def test_wal_mode_with_checkpoints_after_commits_not_inside_them(open_connection,
                                                                  monkeypatch):
    connection = open_connection()
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode")
        assert cursor.fetchone()[0] == "wal"
        cursor.execute("PRAGMA wal_autocheckpoint")
        assert cursor.fetchone()[0] == 0  # SQLite would checkpoint inside a commit
        cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the table into the file
    monkeypatch.setattr(sqlite_backend, "CHECKPOINT_SECONDS", 3600)
    monkeypatch.setattr(sqlite_backend, "_last_checkpoint", time.monotonic())
    write(connection, "in the wal")
    assert checkpointed_rows(connection) == 0
    monkeypatch.setattr(sqlite_backend, "_last_checkpoint", NEVER)
    write(connection, "and both copied")
    assert checkpointed_rows(connection) == 2


def test_writes_outside_transactions_also_get_checkpointed(open_connection, monkeypatch):
    """An idle node's only writes (heartbeats) are autocommitted: they must not grow the WAL
    forever now that SQLite's own automatic checkpoint is off."""
    connection = open_connection()
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        monkeypatch.setattr(sqlite_backend, "_last_checkpoint", NEVER)
        cursor.execute("INSERT INTO item (name) VALUES (%s)", ["heartbeat"])
    assert checkpointed_rows(connection) == 1


def test_placeholders_convert_the_same_when_the_statement_is_kept(open_connection):
    """The memoised %s -> ? conversion: literal %% stays one %, named parameters and long
    statements take Django's own path, and a kept statement gives the same answer again."""
    connection = open_connection()
    with connection.cursor() as cursor:
        for _ in range(2):
            cursor.execute("SELECT %s, '100%%'", [7])
            assert cursor.fetchone() == (7, "100%")
        cursor.execute("SELECT %(n)s, '5%%'", {"n": 3})
        assert cursor.fetchone() == (3, "5%")
        many = ", ".join(["%s"] * 2000)  # past the length that is kept
        cursor.execute(f"SELECT COUNT(*) FROM item WHERE id IN ({many})",  # noqa: S608
                       list(range(2000)))
        assert cursor.fetchone() == (0,)
    assert sqlite_backend._qmark_query.cache_info().hits >= 1


def test_connections_are_borrowed_from_a_bounded_pool_and_given_back(open_connection,
                                                                     monkeypatch):
    """A closed connection goes back to the process's pool and the next one opened reuses it;
    an open transaction is rolled back on the way; no more than POOL_SIZE are ever out."""
    pool = sqlite_backend.ConnectionPool(2)
    monkeypatch.setattr(sqlite_backend.DatabaseWrapper, "pool", pool)
    monkeypatch.setattr(sqlite_backend, "WAIT_SECONDS", 0.2)
    first = open_connection()
    first.ensure_connection()
    raw = first.connection
    raw.execute("BEGIN")
    raw.execute("CREATE TABLE left_open (x)")
    first.close()
    second = open_connection()
    second.ensure_connection()
    assert second.connection is raw and not raw.in_transaction  # reused, rolled back
    assert "left_open" not in second.introspection.table_names()
    third = open_connection()
    third.ensure_connection()  # the second slot
    with pytest.raises(OperationalError, match="no database connection free"):
        open_connection().ensure_connection()
    third.close()
    fourth = open_connection()
    fourth.ensure_connection()  # a slot came back
    assert fourth.connection is not raw


@pytest.fixture
def event_loop_pool(monkeypatch):
    """A pool of two, with the backend believing it runs under the gevent worker (greenlets
    of one thread take turns: here, connections used one after another in this thread)."""
    pool = sqlite_backend.ConnectionPool(2)
    monkeypatch.setattr(sqlite_backend.DatabaseWrapper, "pool", pool)
    monkeypatch.setattr(sqlite_backend, "WAIT_SECONDS", 0.2)
    monkeypatch.setattr(sqlite_backend.offload, "on_event_loop", lambda: True)
    # The offload pool made meanwhile is gevent's: later tests get theirs back.
    monkeypatch.setattr(sqlite_backend.offload, "_pool", None)
    return pool


def test_a_parked_connection_serves_its_owners_next_request(open_connection, event_loop_pool):
    """Between two requests of a keep-alive client the connection stays parked with it:
    Django's end-of-request close leaves it alone and the next query reuses it as it is."""
    owner = open_connection()
    write(owner, "a")
    raw = owner.connection
    owner.park()
    owner.close_if_unusable_or_obsolete()  # request_finished, with CONN_MAX_AGE=0
    assert owner.connection is raw
    assert count(owner) == 1 and owner.connection is raw  # no connect, no borrow
    owner.park()
    owner.close()  # the client connection ended: back to the pool for anyone
    other = open_connection()
    other.ensure_connection()
    assert other.connection is raw


def test_a_borrower_with_no_free_slot_takes_a_parked_connection(open_connection,
                                                                event_loop_pool):
    """With every slot out, a borrower does not wait for idle keep-alive clients: it takes the
    longest-parked connection, and that owner's next query borrows anew."""
    first, second, third = open_connection(), open_connection(), open_connection()
    write(first, "a")
    write(second, "b")
    lent = first.connection
    first.park()
    second.park()
    write(third, "c")  # no slot free: takes first's connection
    assert third.connection is lent and first.connection is None
    third.close()
    assert count(first) == 3  # first borrows again (the slot third gave back)
    assert second.connection is not None  # still parked, untouched


def test_nobody_parks_while_a_borrower_waits(open_connection, event_loop_pool):
    """A connection is given back, not parked, while another borrower waits for a slot."""
    holders = [open_connection(), open_connection()]
    for index, holder in enumerate(holders):
        write(holder, str(index))
    started = threading.Event()
    done = {}

    def borrow() -> None:
        waiting = open_connection()  # a connection belongs to the thread that made it
        started.set()
        with waiting.cursor() as cursor:
            cursor.execute("SELECT 1")
            done["ok"] = cursor.fetchone() == (1,)
        waiting.close()

    event_loop_pool._current()
    thread = threading.Thread(target=borrow)
    thread.start()
    started.wait()
    deadline = time.monotonic() + 5
    while not event_loop_pool._waiting and time.monotonic() < deadline:
        time.sleep(0.005)
    holders[0].park()  # someone waits: this gives its connection back instead
    thread.join(5)
    assert done == {"ok": True}
    assert holders[0].connection is None
    holders[1].close()

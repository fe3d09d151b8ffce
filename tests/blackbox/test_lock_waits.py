"""A request that waits for a database lock another change holds (a rename or delete of a large
tree holds SQLite's one write lock, or on PostgreSQL the row locks of the tree's directories)
gets a clear 503 LOCK_TIMEOUT after CALLFS_LOCK_TIMEOUT, never a hang; readers never wait."""

from __future__ import annotations

import dataclasses
import fcntl
import os
import secrets
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import requests

from tests.blackbox.conftest import Server, running_server

LOCK_TIMEOUT = 2
POSTGRES = os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://"))


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("callfs-lock-waits"), "waits",
                        CALLFS_LOCK_TIMEOUT=str(LOCK_TIMEOUT)) as srv:
        yield srv


def timed(method, *args, **kwargs) -> tuple[requests.Response, float]:
    started = time.monotonic()
    response = method(*args, timeout=30, **kwargs)
    return response, time.monotonic() - started


def assert_waited_then_refused(response: requests.Response, took: float) -> None:
    assert response.status_code == 503, response.text
    assert response.json()["code"] == "LOCK_TIMEOUT", response.text
    assert LOCK_TIMEOUT - 0.5 <= took < LOCK_TIMEOUT + 3, took


@pytest.fixture
def node(server: Server) -> Server:
    """The server, with a prefix of this test's own."""
    return dataclasses.replace(server, prefix=f"{server.prefix}/{secrets.token_hex(4)}")


@pytest.fixture
def tree(node: Server) -> requests.Session:
    """A session, and `held/old.txt`."""
    session = node.session()
    assert session.post(node.url("held/")).status_code == 201
    assert session.put(node.url("held/old.txt"), data=b"old").status_code == 201
    return session


@contextmanager
def sqlite_writer_turn_held(server: Server) -> Iterator[None]:
    """What a long rename does to every other writer of the node: it holds the turn to write
    (callfs_site.sqlite's queue of writers, a flock beside the database)."""
    database = server.data_dir.parent / "db.sqlite3"
    with open(f"{database}.writers", "a+b") as turn:
        fcntl.flock(turn, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(turn, fcntl.LOCK_UN)


@pytest.mark.fastpaths  # the turn to write is callfs_site.sqlite's
@pytest.mark.skipif(POSTGRES, reason="SQLite's write lock (the PostgreSQL pass: row locks)")
def test_a_writer_gets_lock_timeout_while_another_change_holds_sqlite(node, tree):
    with sqlite_writer_turn_held(node):
        response, took = timed(tree.put, node.url("held/new.txt"), data=b"new")
        assert_waited_then_refused(response, took)
        response, took = timed(tree.get, node.url("held/old.txt"))
        assert (response.status_code, response.content) == (200, b"old")
        assert took < 1  # readers never wait for writers (WAL)
    assert tree.put(node.url("held/new.txt"), data=b"new").status_code == 201


@pytest.mark.skipif(POSTGRES, reason="SQLite's write lock (the PostgreSQL pass: row locks)")
def test_sqlite_busy_from_another_program_is_lock_timeout_too(node, tree):
    """A writer outside the server (a script, the sqlite3 shell) holding a write transaction:
    SQLite's busy timeout, also CALLFS_LOCK_TIMEOUT, runs out."""
    outsider = sqlite3.connect(node.data_dir.parent / "db.sqlite3", isolation_level=None)
    outsider.execute("BEGIN IMMEDIATE")
    try:
        response, took = timed(tree.put, node.url("held/busy.txt"), data=b"new")
        assert_waited_then_refused(response, took)
    finally:
        outsider.execute("ROLLBACK")
        outsider.close()
    assert tree.put(node.url("held/busy.txt"), data=b"new").status_code == 201


@pytest.mark.skipif(not POSTGRES, reason="PostgreSQL's row locks (the SQLite pass: its write lock)")
def test_a_writer_gets_lock_timeout_while_another_change_holds_its_directory(node, tree):
    """A rename or delete of a tree locks its directories' rows until it commits: a writer into
    one of them waits at most CALLFS_LOCK_TIMEOUT; writers elsewhere do not wait at all."""
    import psycopg

    holder = psycopg.connect(os.environ["DATABASE_URL"].replace("postgres://", "postgresql://"))
    try:
        locked = holder.execute("SELECT id FROM filesystem_inode WHERE path = %s FOR UPDATE",
                                (f"{node.prefix}/held",)).fetchall()
        assert len(locked) == 1
        response, took = timed(tree.put, node.url("held/new.txt"), data=b"new")
        assert_waited_then_refused(response, took)
        response, took = timed(tree.put, node.url("elsewhere.txt"), data=b"new")
        assert response.status_code == 201 and took < 1, (response.text, took)
        response, took = timed(tree.get, node.url("held/old.txt"))
        assert (response.status_code, response.content) == (200, b"old") and took < 1
    finally:
        holder.rollback()
        holder.close()
    assert tree.put(node.url("held/new.txt"), data=b"new").status_code == 201

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
def writer_turn_held(node: Server) -> Iterator[None]:
    """SQLite, with the fast paths: the turn to write (callfs_site.sqlite's flock beside the
    database), which a long rename holds."""
    with open(f"{node.data_dir.parent / 'db.sqlite3'}.writers", "a+b") as turn:
        fcntl.flock(turn, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(turn, fcntl.LOCK_UN)


@contextmanager
def write_transaction_held(node: Server) -> Iterator[None]:
    """SQLite: a write transaction of another program (a script, the sqlite3 shell), which
    SQLite's busy timeout waits for."""
    outsider = sqlite3.connect(node.data_dir.parent / "db.sqlite3", isolation_level=None)
    outsider.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        outsider.execute("ROLLBACK")
        outsider.close()


@contextmanager
def directory_row_locked(node: Server) -> Iterator[None]:
    """PostgreSQL: the row of `held/` locked, as a rename or delete of a tree locks its
    directories until it commits."""
    import psycopg

    holder = psycopg.connect(os.environ["DATABASE_URL"].replace("postgres://", "postgresql://"))
    try:
        locked = holder.execute("SELECT id FROM filesystem_inode WHERE path = %s FOR UPDATE",
                                (f"{node.prefix}/held",)).fetchall()
        assert len(locked) == 1
        yield
    finally:
        holder.rollback()
        holder.close()


def holders() -> list:
    if POSTGRES:
        return [directory_row_locked]
    stock = os.environ.get("CALLFS_STOCK") == "1"  # Django's own SQLite backend: no turn
    return [write_transaction_held] + ([] if stock else [writer_turn_held])


def test_a_writer_gets_lock_timeout_while_a_long_change_holds_the_database(node, tree):
    for index, held in enumerate(holders()):
        with held(node):
            response, took = timed(tree.put, node.url(f"held/new{index}.txt"), data=b"new")
            assert_waited_then_refused(response, took)
            response, took = timed(tree.get, node.url("held/old.txt"))
            assert (response.status_code, response.content) == (200, b"old")
            assert took < 1  # readers never wait for writers (WAL; MVCC)
            if POSTGRES:  # row locks: writers elsewhere do not wait either
                response, took = timed(tree.put, node.url(f"elsewhere{index}.txt"), data=b"x")
                assert response.status_code == 201 and took < 1, (response.text, took)
        assert tree.put(node.url(f"held/new{index}.txt"), data=b"new").status_code == 201

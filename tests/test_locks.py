"""distributed_lock (callfs_site.locks) with host-local file locks and with Redis."""

from __future__ import annotations

import dataclasses
import threading
from functools import partial

import pytest

from callfs_site.errors import LockTimeout, ServiceUnavailable
from callfs_site.locks import distributed_lock
from tests.helpers import assert_error, run_in_threads, upload


def _hold(name: str, acquired: threading.Event, release: threading.Event) -> threading.Thread:
    def run():
        with distributed_lock(name, timeout=2):
            acquired.set()
            release.wait(5)

    thread = threading.Thread(target=run)
    thread.start()
    assert acquired.wait(5)
    return thread


def test_a_held_lock_makes_others_wait_then_time_out(lock_backend):
    acquired, release = threading.Event(), threading.Event()
    holder = _hold("/busy", acquired, release)
    try:
        with pytest.raises(LockTimeout), distributed_lock("/busy", timeout=0.3):
            pass
        with distributed_lock("/other", timeout=0.3):
            pass  # a different name is free
    finally:
        release.set()
        holder.join()
    with distributed_lock("/busy", timeout=1):
        pass  # released


def test_several_names_at_once_do_not_deadlock(lock_backend):
    errors = []

    def worker(first, second):
        try:
            for _ in range(20):
                with distributed_lock(first, second, timeout=5):
                    pass
        except Exception as exc:  # pragma: no cover - the assertion below reports it
            errors.append(exc)

    run_in_threads(partial(worker, "/a", "/b"), partial(worker, "/b", "/a"))
    assert errors == []


def test_a_busy_path_answers_503_lock_timeout(lock_backend, auth_client, settings):
    settings.CALLFS = dataclasses.replace(settings.CALLFS, lock_timeout=0.3)
    upload(auth_client, "/locked.txt", b"old")
    acquired, release = threading.Event(), threading.Event()
    holder = _hold("/locked.txt", acquired, release)
    try:
        assert_error(upload(auth_client, "/locked.txt", b"new", method="put"), 503,
                     "LOCK_TIMEOUT")
    finally:
        release.set()
        holder.join()
    assert auth_client.get("/v1/files/locked.txt").getvalue() == b"old"


def test_redis_down_is_503_service_unavailable(auth_client, redis_down):
    with pytest.raises(ServiceUnavailable), distributed_lock("/x", timeout=1):
        pass
    assert_error(upload(auth_client, "/x.txt", b"x"), 503, "SERVICE_UNAVAILABLE")

"""distributed_lock with file locks and Redis; node management commands and /v1/nodes/."""

from __future__ import annotations

import dataclasses
import os
import threading
from functools import partial
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings

from callfs_site.errors import LockTimeout, ServiceUnavailable
from cluster.locks import distributed_lock
from cluster.models import Node
from cluster.services import register_node
from tests.helpers import assert_error, run_in_threads, upload

REDIS_CACHE = {"BACKEND": "django_redis.cache.RedisCache",
               "OPTIONS": {"IGNORE_EXCEPTIONS": False, "SOCKET_CONNECT_TIMEOUT": 1,
                           "SOCKET_TIMEOUT": 2}}


@pytest.fixture(params=["file", "redis"])
def lock_backend(request, settings):
    """Run a test with host-local file locks, then with Redis locks (REDIS_URL required)."""
    if request.param == "redis":
        url = os.environ.get("CALLFS_TEST_REDIS_URL") or os.environ.get("REDIS_URL")
        if not url:
            pytest.skip("REDIS_URL is not set (make test starts Redis)")
        settings.CALLFS = dataclasses.replace(settings.CALLFS, redis_url=url)
        with override_settings(CACHES={"default": {**REDIS_CACHE, "LOCATION": url},
                                       "locks": {**REDIS_CACHE, "LOCATION": url,
                                                 "KEY_PREFIX": f"t{os.getpid()}"}}):
            yield "redis"
    else:
        settings.CALLFS = dataclasses.replace(settings.CALLFS, redis_url=None)
        yield "file"


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


@pytest.mark.django_db
def test_register_list_and_remove_nodes():
    out = StringIO()
    call_command("register_node", "node-a", "http://10.0.0.1:8000/", stdout=out)
    assert "Registered node node-a" in out.getvalue()
    call_command("register_node", "node-a", "http://10.0.0.9:8000", stdout=out)
    assert Node.objects.get(node_id="node-a").url == "http://10.0.0.9:8000"
    with pytest.raises(CommandError):
        call_command("register_node", "node-b", "ftp://x")
    listing = StringIO()
    call_command("list_nodes", stdout=listing)
    assert "node-a" in listing.getvalue() and "down" in listing.getvalue()  # never heartbeat
    register_node("node-a", "http://10.0.0.9:8000", heartbeat=True)
    assert Node.objects.get(node_id="node-a").state == "up"
    call_command("remove_node", "node-a", stdout=out)
    assert not Node.objects.filter(node_id="node-a").exists()
    with pytest.raises(CommandError, match="no node"):
        call_command("remove_node", "node-a")


def test_remove_node_refuses_while_it_holds_files(auth_client, settings):
    register_node(settings.CALLFS.node_id, "http://127.0.0.1:8000", heartbeat=True)
    upload(auth_client, "/held.txt", b"x")
    with pytest.raises(CommandError, match="still holds 1 file"):
        call_command("remove_node", settings.CALLFS.node_id)


def test_nodes_api_lists_nodes(auth_client, api_client):
    register_node("node-z", "http://127.0.0.1:9999", heartbeat=True)
    response = auth_client.get("/v1/nodes/")
    assert response.status_code == 200
    [node] = [n for n in response.json() if n["id"] == "node-z"]
    assert node["state"] == "up" and node["url"] == "http://127.0.0.1:9999"
    assert auth_client.get("/v1/nodes/node-z").json()["id"] == "node-z"
    assert api_client.get("/v1/nodes/").status_code == 401


def test_a_file_on_an_unregistered_node_is_502(auth_client, settings):
    from filesystem.models import Inode

    upload(auth_client, "/far.txt", b"x")
    Inode.objects.filter(path="/far.txt").update(node_id="ghost-node")
    settings.CALLFS = dataclasses.replace(settings.CALLFS, internal_secret="s" * 20)
    assert_error(auth_client.get("/v1/files/far.txt"), 502, "NODE_UNAVAILABLE")

"""Metrics operators expect (issue 21): callfs_active_locks, per-worker process metrics, and the
metrics listener (CALLFS_METRICS_BIND). tests/blackbox/test_metrics_endpoint.py checks the same
under a real gunicorn with two workers."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import threading
from io import StringIO

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command

from callfs_site import metrics
from callfs_site.config import load_config
from callfs_site.errors import LockTimeout
from callfs_site.locks import distributed_lock
from callfs_site.metrics import exposition
from tests.helpers import assert_error
from tests.servers import PROJECT

PROCESS_METRICS = ("process_resident_memory_bytes", "process_virtual_memory_bytes",
                   "process_cpu_seconds_total", "process_open_fds", "process_max_fds",
                   "process_start_time_seconds")


def sample(name: str, text: str | None = None) -> float:
    """The value of an unlabelled sample in the exposition."""
    text = exposition().decode() if text is None else text
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert found, f"{name} is not exposed"
    return float(found.group(1))


# --- callfs_active_locks -----------------------------------------------------------------------


def test_active_locks_is_a_gauge_of_the_locks_held_now(lock_backend):
    text = exposition().decode()
    assert "# TYPE callfs_active_locks gauge" in text
    before = sample("callfs_active_locks", text)
    with distributed_lock("/gauge/a"):
        assert sample("callfs_active_locks") == before + 1
        with distributed_lock("/gauge/b", "/gauge/c"):
            assert sample("callfs_active_locks") == before + 3  # each name is a lock
        assert sample("callfs_active_locks") == before + 1
    assert sample("callfs_active_locks") == before


def test_active_locks_falls_back_when_the_holder_fails(lock_backend):
    before = sample("callfs_active_locks")
    with pytest.raises(RuntimeError), distributed_lock("/gauge/failing"):
        assert sample("callfs_active_locks") == before + 1
        raise RuntimeError("the commit failed")
    assert sample("callfs_active_locks") == before


def test_a_lock_never_acquired_is_not_counted(lock_backend):
    before = sample("callfs_active_locks")
    acquired, release = threading.Event(), threading.Event()

    def hold():
        with distributed_lock("/gauge/busy", timeout=2):
            acquired.set()
            release.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert acquired.wait(5)
        with pytest.raises(LockTimeout), distributed_lock("/gauge/free", "/gauge/busy",
                                                          timeout=0.2):
            pass
        assert sample("callfs_active_locks") == before + 1  # the holder's only
    finally:
        release.set()
        holder.join()
    assert sample("callfs_active_locks") == before


# --- process metrics ---------------------------------------------------------------------------


def test_a_single_process_exposes_its_own_process_metrics(monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    text = exposition().decode()
    for name in PROCESS_METRICS:
        assert re.search(rf"^{name}(\{{[^}}]*\}})? \S+$", text, re.M), name


def test_with_a_multiprocess_directory_each_worker_is_labelled_by_pid(monkeypatch, tmp_path):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    text = exposition().decode()
    pid = os.getpid()
    for name in PROCESS_METRICS:
        assert re.search(rf'^{name}\{{pid="{pid}"\}} \S+$', text, re.M), name
    assert float(re.search(rf'^process_resident_memory_bytes\{{pid="{pid}"\}} (\S+)$', text,
                           re.M).group(1)) > 1e6
    assert len(re.findall(r"^# TYPE process_resident_memory_bytes ", text, re.M)) == 1


def test_workers_are_the_live_siblings_that_write_metrics(tmp_path):
    """Every worker writes <kind>_<pid>.db files; files of dead workers stay (their counters
    still count), and the master and other programs are not workers."""
    sibling = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        for pid in (sibling.pid, dead.pid, 1):
            (tmp_path / f"counter_{pid}.db").write_bytes(b"")
        (tmp_path / f"histogram_{sibling.pid}.db").write_bytes(b"")
        (tmp_path / "unrelated.txt").write_bytes(b"")
        # As the test process's children, `sibling` and this process share a parent.
        assert metrics.worker_pids(str(tmp_path), parent=os.getpid()) == sorted(
            {sibling.pid, os.getpid()})
        assert metrics.worker_pids(str(tmp_path)) == [os.getpid()]  # it is always there itself
    finally:
        sibling.kill()
        sibling.wait()


FORKED_WORKER = """
import json, os, signal, sys, time
from callfs_site import metrics
ready_read, ready_write = os.pipe()
child = os.fork()
if child == 0:  # a worker that serves nothing: it never writes a sample
    os.write(ready_write, b"x")
    time.sleep(30)
    os._exit(0)
os.read(ready_read, 1)
try:
    pids = metrics.worker_pids(os.environ["PROMETHEUS_MULTIPROC_DIR"], parent=os.getpid())
    print(json.dumps({"child": child, "pids": pids}))
finally:
    os.kill(child, signal.SIGKILL)
"""


def test_a_worker_that_has_served_nothing_is_listed(tmp_path):
    """prometheus_client makes a process's files at its first sample; a forked worker makes
    them at once, so an idle worker's process metrics are not missing."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", FORKED_WORKER], env=env, capture_output=True,
                            text=True, timeout=60, check=True, cwd=PROJECT)
    found = json.loads(result.stdout)
    assert found["child"] in found["pids"]


# --- CALLFS_METRICS_BIND -----------------------------------------------------------------------


def test_metrics_bind_is_off_by_default():
    assert load_config({}).metrics_bind is None


@pytest.mark.parametrize(("value", "expected"), [
    ("127.0.0.1:9100", "127.0.0.1:9100"),
    (":9100", "0.0.0.0:9100"),  # noqa: S104 - upstream's ":9090" form
    ("[::1]:9100", "[::1]:9100"),
    ("metrics.internal:9100", "metrics.internal:9100"),
])
def test_metrics_bind_takes_host_and_port(value, expected):
    assert load_config({"CALLFS_METRICS_BIND": value}).metrics_bind == expected


@pytest.mark.parametrize("value", ["9100", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000",
                                   "127.0.0.1:http", "unix:/tmp/m.sock", "fd://3",
                                   "127.0.0.1:8000"])
def test_a_bad_metrics_bind_is_named_in_one_line(value):
    with pytest.raises(ImproperlyConfigured) as error:
        load_config({"CALLFS_METRICS_BIND": value, "CALLFS_BIND": "0.0.0.0:8000"})
    message = str(error.value)
    assert message.startswith("CALLFS_METRICS_BIND:")
    assert "\n" not in message


def test_upstream_metrics_listen_addr_is_read(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text('server:\n  listen_addr: ":8443"\nmetrics:\n  listen_addr: ":9090"\n')
    assert load_config({"CALLFS_CONFIG": str(path)}).metrics_bind == "0.0.0.0:9090"


@pytest.mark.django_db
def test_validate_config_shows_the_metrics_bind(settings):
    settings.CALLFS = dataclasses.replace(settings.CALLFS, metrics_bind="127.0.0.1:9100",
                                          allowed_hosts=["files.example.com"])
    out = StringIO()
    call_command("validate_config", stdout=out)
    assert re.search(r"^metrics_bind +127\.0\.0\.1:9100$", out.getvalue(), re.M)


class ListenerSocket:
    """The accepted connection as gunicorn puts it in the environ (`gunicorn.socket`)."""

    def __init__(self, local):
        self.local = local

    def getsockname(self):
        return self.local


ON_LISTENER = {"SERVER_PORT": "9100", "gunicorn.socket": ListenerSocket(("127.0.0.1", 9100))}


@pytest.fixture
def listener(settings):
    settings.CALLFS = dataclasses.replace(settings.CALLFS, metrics_bind="127.0.0.1:9100",
                                          metrics_public=False)


@pytest.mark.django_db
def test_the_listener_serves_metrics_without_a_key(listener, api_client):
    response = api_client.get("/metrics", **ON_LISTENER)
    assert response.status_code == 200
    assert b"callfs_http_requests_total" in response.content
    assert response.has_header("X-Request-ID")
    assert api_client.get("/health", **ON_LISTENER).status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/v1/files/", "/v1/directories/", "/ready", "/admin/",
                                  "/download/abc", "/v1/schema/", "/metricsx"])
def test_the_listener_answers_nothing_else(listener, auth_client, path):
    assert_error(auth_client.get(path, **ON_LISTENER), 404, "NOT_FOUND")
    assert_error(auth_client.post(path, data=b"x", content_type="application/octet-stream",
                                  **ON_LISTENER), 404, "NOT_FOUND")


@pytest.mark.django_db
def test_the_main_port_still_needs_a_key(listener, api_client, auth_client):
    assert_error(api_client.get("/metrics"), 401, "AUTHENTICATION_FAILED")
    assert auth_client.get("/metrics").status_code == 200
    assert auth_client.get("/v1/files/").status_code == 200


@pytest.mark.django_db
def test_a_host_header_naming_the_listener_port_changes_nothing(listener, api_client,
                                                                auth_client):
    """Behind a unix socket gunicorn takes SERVER_PORT from the Host header: only the
    connection's own local address says which listener took it."""
    spoofed = {"SERVER_PORT": "9100", "HTTP_HOST": "127.0.0.1:9100",
               "gunicorn.socket": ListenerSocket("/run/callfs.sock")}
    assert_error(api_client.get("/metrics", **spoofed), 401, "AUTHENTICATION_FAILED")
    assert auth_client.get("/v1/files/", **spoofed).status_code == 200
    other_port = {"SERVER_PORT": "9100", "gunicorn.socket": ListenerSocket(("127.0.0.1", 8000))}
    assert_error(api_client.get("/metrics", **other_port), 401, "AUTHENTICATION_FAILED")


@pytest.mark.django_db
def test_without_a_listener_nothing_is_special(api_client, auth_client):
    assert_error(api_client.get("/metrics", **ON_LISTENER), 401, "AUTHENTICATION_FAILED")
    assert auth_client.get("/v1/files/", **ON_LISTENER).status_code == 200


# --- gunicorn.conf.py --------------------------------------------------------------------------


@pytest.fixture
def load_conf(monkeypatch, tmp_path):
    import runpy

    from tests.test_gunicorn_conf import CONF

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))

    def load(**env: str) -> dict:
        monkeypatch.delenv("CALLFS_METRICS_BIND", raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return runpy.run_path(str(CONF))

    return load


def test_gunicorn_listens_on_the_metrics_bind_too(load_conf):
    assert load_conf(CALLFS_BIND="127.0.0.1:8123")["bind"] == ["127.0.0.1:8123"]
    conf = load_conf(CALLFS_BIND="127.0.0.1:8123", CALLFS_METRICS_BIND="127.0.0.1:9123")
    assert conf["bind"] == ["127.0.0.1:8123", "127.0.0.1:9123"]
    assert conf["reuse_port"] is True
    conf = load_conf(CALLFS_BIND="unix:/tmp/callfs.sock", CALLFS_METRICS_BIND="127.0.0.1:9123")
    assert conf["bind"] == ["unix:/tmp/callfs.sock", "127.0.0.1:9123"]
    assert conf["reuse_port"] is False


def test_a_held_metrics_port_stops_gunicorn_with_one_line(tmp_path):
    import socket

    from tests.servers import free_port
    from tests.test_gunicorn_conf import CONF

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        env = {**os.environ, "CALLFS_BIND": f"127.0.0.1:{free_port()}",
               "CALLFS_METRICS_BIND": f"127.0.0.1:{port}",
               "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3",
               "CALLFS_DATA_DIR": str(tmp_path / "data")}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        result = subprocess.run([sys.executable, "-m", "gunicorn", "-c", str(CONF)],
                                cwd=CONF.parent, env=env, capture_output=True, text=True,
                                timeout=60, check=False)
    assert result.returncode == 2
    assert f"callfs: cannot listen on 127.0.0.1:{port}: Address already in use" in result.stderr


def test_masked_settings_are_json_friendly():
    shown = load_config({"CALLFS_METRICS_BIND": "127.0.0.1:9100"}).masked()
    assert json.loads(json.dumps(shown, default=str))["metrics_bind"] == "127.0.0.1:9100"

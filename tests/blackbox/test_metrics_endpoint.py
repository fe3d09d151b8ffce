"""/metrics under a real gunicorn with two workers (issue 21): process metrics of every live
worker labelled by pid, callfs_active_locks summed over the live workers, and the separate
metrics listener (CALLFS_METRICS_BIND) serving /metrics without a key and nothing else."""

from __future__ import annotations

import os
import re
import secrets
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests

from tests.blackbox.conftest import child_pids, running_server
from tests.servers import free_port, log_tail

pytestmark = pytest.mark.blackbox

TIMEOUT = 10
PROCESS_METRICS = ("process_resident_memory_bytes", "process_virtual_memory_bytes",
                   "process_cpu_seconds_total", "process_open_fds", "process_max_fds",
                   "process_start_time_seconds")


@dataclass
class Node:
    base_url: str
    metrics_url: str
    metrics_port: int
    key: str
    pid: int
    log_path: object

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}", "Connection": "close"}

    def workers(self) -> list[int]:
        return child_pids(self.pid)

    def scrape(self) -> str:
        response = requests.get(f"{self.base_url}/metrics", headers=self.auth(), timeout=TIMEOUT)
        assert response.status_code == 200, log_tail(self.log_path)
        return response.text


@pytest.fixture(scope="module")
def node(tmp_path_factory) -> Iterator[Node]:
    metrics_port = free_port()
    with running_server(tmp_path_factory.mktemp("callfs-metrics"), "metrics",
                        CALLFS_METRICS_BIND=f"127.0.0.1:{metrics_port}") as srv:
        yield Node(base_url=srv.base_url, metrics_url=f"http://127.0.0.1:{metrics_port}",
                   metrics_port=metrics_port, key=srv.alice_key, pid=srv.pid,
                   log_path=srv.log_path)


def labelled_pids(text: str, name: str) -> set[int]:
    return {int(pid) for pid in re.findall(rf'^{name}\{{pid="(\d+)"\}} \S+$', text, re.M)}


def test_process_metrics_of_every_worker(node):
    workers = set(node.workers())
    assert len(workers) == 2
    for _ in range(6):  # whichever worker answers, it reports both
        text = node.scrape()
        for name in PROCESS_METRICS:
            assert labelled_pids(text, name) == workers, (name, text[-2000:])
        assert len(re.findall(r"^# TYPE process_cpu_seconds_total counter$", text, re.M)) == 1
    rss = re.findall(r'^process_resident_memory_bytes\{pid="\d+"\} (\S+)$', text, re.M)
    assert all(float(value) > 10e6 for value in rss)


def test_active_locks_is_back_to_zero_after_writes_in_every_worker(node):
    prefix = f"/metrics-{secrets.token_hex(4)}"
    for index in range(12):  # fresh connections: both workers take some of them
        response = requests.put(f"{node.base_url}/v1/files{prefix}/f{index}.txt",
                                data=b"x" * index, headers=node.auth(), timeout=TIMEOUT)
        assert response.status_code in (200, 201), response.text
    text = node.scrape()
    assert "# TYPE callfs_active_locks gauge" in text
    assert re.search(r"^callfs_active_locks 0\.0$", text, re.M), text[-3000:]
    assert re.search(r'^callfs_lock_wait_seconds_count\{backend="\w+"\} [1-9]', text, re.M)


def put_count(text: str) -> float:
    found = re.search(r'^callfs_http_requests_total\{method="PUT",path="/v1/files/\*",'
                      r'status_code="201"\} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def test_a_killed_worker_leaves_the_process_metrics(node):
    prefix = f"/killed-{secrets.token_hex(4)}"
    for index in range(6):
        assert requests.put(f"{node.base_url}/v1/files{prefix}/f{index}.txt", data=b"x",
                            headers=node.auth(), timeout=TIMEOUT).status_code == 201
    before = put_count(node.scrape())
    assert before >= 6
    victim = node.workers()[0]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 15
    while (victim in node.workers() or len(node.workers()) < 2) \
            and time.monotonic() < deadline:
        time.sleep(0.1)
    workers = set(node.workers())
    assert victim not in workers and len(workers) == 2
    # The new worker is listed at once, whichever worker answers, before it served anything.
    for _ in range(6):
        text = requests.get(f"{node.metrics_url}/metrics", timeout=TIMEOUT).text
        for name in PROCESS_METRICS:
            assert labelled_pids(text, name) == workers, name
    assert re.search(r"^callfs_active_locks 0\.0$", text, re.M)
    assert put_count(text) == before  # the requests the dead worker served still count


def test_the_metrics_listener_serves_metrics_without_a_key(node):
    response = requests.get(f"{node.metrics_url}/metrics", timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert "callfs_http_requests_total" in response.text
    assert "process_resident_memory_bytes{pid=" in response.text
    assert requests.get(f"{node.metrics_url}/health", timeout=TIMEOUT).status_code == 200


@pytest.mark.parametrize("path", ["/v1/files/", "/v1/directories/", "/ready", "/admin/",
                                  "/v1/schema/", "/download/abc", "/nothing"])
def test_the_metrics_listener_serves_nothing_else(node, path):
    for method in ("GET", "POST"):
        response = requests.request(method, f"{node.metrics_url}{path}", headers=node.auth(),
                                    timeout=TIMEOUT)
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["code"] == "NOT_FOUND"


def test_the_main_port_still_needs_a_key_whatever_the_host_header(node):
    for host in (None, f"127.0.0.1:{node.metrics_port}", f"localhost:{node.metrics_port}"):
        headers = {"Host": host} if host else {}
        response = requests.get(f"{node.base_url}/metrics", headers=headers, timeout=TIMEOUT)
        assert response.status_code == 401, host
        assert response.json()["code"] == "AUTHENTICATION_FAILED"
    assert requests.get(f"{node.base_url}/v1/files/", headers=node.auth(),
                        timeout=TIMEOUT).status_code == 200


def test_the_metrics_listener_reaches_both_workers(node):
    """Each worker has its own socket on the metrics port too (SO_REUSEPORT): a scrape works
    whichever worker the kernel hands it to, and every one reports both workers."""
    for _ in range(8):
        response = requests.get(f"{node.metrics_url}/metrics", timeout=TIMEOUT)
        assert response.status_code == 200
        assert labelled_pids(response.text, "process_open_fds") == set(node.workers())

"""Three real CallFS nodes under gunicorn on loopback, sharing PostgreSQL and Redis.

Each node has its own data directory, node id and port, and the same internal secret. They need
DATABASE_URL (PostgreSQL) and REDIS_URL: `make test` runs this module in its PostgreSQL pass.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from tests.servers import free_port, manage, start_gunicorn, stop_gunicorn


@dataclass
class ClusterNode:
    node_id: str
    port: int
    env: dict[str, str]
    data_dir: Path
    log_path: Path
    process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = start_gunicorn(self.env, self.log_path, self.base_url)

    def kill(self) -> None:
        """SIGKILL the whole process group: a crashed machine, not a graceful stop."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process:
            stop_gunicorn(self.process)


@dataclass
class Cluster:
    nodes: list[ClusterNode]
    alice_key: str
    bob_key: str
    prefix: str
    secret: str
    sessions: dict[str, requests.Session] = field(default_factory=dict)

    def url(self, node: int, path: str, api: str = "files") -> str:
        return f"{self.nodes[node].base_url}/v1/{api}{self.prefix}/{path.lstrip('/')}"

    def session(self, key: str | None = None) -> requests.Session:
        key = key or self.alice_key
        if key not in self.sessions:
            session = requests.Session()
            session.headers["Authorization"] = f"Bearer {key}"
            self.sessions[key] = session
        return self.sessions[key]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[Cluster]:
    yield from start_cluster(tmp_path_factory)


def start_cluster(tmp_path_factory, **settings: str) -> Iterator[Cluster]:
    """Three nodes with these extra settings (CALLFS_* variables), stopped at the end."""
    database_url, redis_url = os.environ.get("DATABASE_URL", ""), os.environ.get("REDIS_URL")
    if not database_url.startswith(("postgres://", "postgresql://")) or not redis_url:
        pytest.skip("the cluster needs DATABASE_URL=postgres://... and REDIS_URL")
    stack = ExitStack()
    tmp = tmp_path_factory.mktemp("callfs-cluster")
    alice_key, bob_key = f"alice-{secrets.token_hex(16)}", f"bob-{secrets.token_hex(16)}"
    secret = secrets.token_urlsafe(24)
    common = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    common.update({
        "DATABASE_URL": database_url, "REDIS_URL": redis_url,
        "CALLFS_API_KEYS": f"alice:{alice_key},bob:{bob_key}",
        "CALLFS_INTERNAL_SECRET": secret, "CALLFS_LINK_SECRET": secrets.token_urlsafe(24),
        "DJANGO_SECRET_KEY": "cluster-test-secret-key-0123456789",
        "CALLFS_WORKERS": "2", "CALLFS_LOG_LEVEL": "warning",
        "CALLFS_S3_PREFIX": f"test-cluster-{secrets.token_hex(8)}/",  # others may share the bucket
        **settings,
    })
    if settings:  # a cluster set up unlike the others gets a database of its own
        common["DATABASE_URL"] = stack.enter_context(_own_database(database_url))
    manage(common, "migrate", "--noinput")
    nodes = []
    for number in (1, 2, 3):
        port = free_port()
        node_id = f"node-{number}-{secrets.token_hex(3)}"
        env = {**common, "CALLFS_NODE_ID": node_id, "CALLFS_BIND": f"127.0.0.1:{port}",
               "CALLFS_NODE_URL": f"http://127.0.0.1:{port}",
               "CALLFS_DATA_DIR": str(tmp / node_id)}
        nodes.append(ClusterNode(node_id, port, env, tmp / node_id, tmp / f"{node_id}.log"))
    try:
        for node in nodes:
            node.start()
        cluster = Cluster(nodes, alice_key, bob_key, f"/cl-{secrets.token_hex(5)}", secret)
        _wait_for_registration(cluster)
        yield cluster
    finally:
        for node in nodes:
            node.stop()
        stack.close()


@contextmanager
def _own_database(url: str) -> Iterator[str]:
    """A fresh database on the server of `url` (dropped afterwards): its URL."""
    import psycopg

    name = f"callfs_cluster_{secrets.token_hex(4)}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        yield f"{url.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _wait_for_registration(cluster: Cluster) -> None:
    """Every node registers itself from its workers at start-up."""
    wanted = {node.node_id for node in cluster.nodes}
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        response = cluster.session().get(f"{cluster.nodes[0].base_url}/v1/nodes/")
        if response.status_code == 200:
            up = {n["id"] for n in response.json() if n["state"] == "up"}
            if wanted <= up:
                return
        time.sleep(0.2)
    pytest.fail(f"nodes did not register: {response.status_code} {response.text[:300]}")

"""The client package against a real gunicorn node (one per test module): the blackbox suite's
environment (SQLite in a temp dir, alice's and bob's keys) plus a superuser key and a `staff`
group for chown/chgrp, and download links that point at the node itself."""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from callfs_client import Client
from callfs_client.cli import main
from click.testing import CliRunner, Result

from tests.blackbox.conftest import _environment
from tests.servers import free_port, log_tail, manage, start_gunicorn, stop_gunicorn


@dataclass
class Node:
    base_url: str
    alice_key: str
    bob_key: str
    admin_key: str
    prefix: str  # "/cl-<random>": every test path lies below it
    log_path: Path

    def log(self) -> str:
        return log_tail(self.log_path)


@pytest.fixture(scope="module")
def node(tmp_path_factory) -> Iterator[Node]:
    tmp = tmp_path_factory.mktemp("callfs-client")
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    alice_key, bob_key = f"alice-{secrets.token_hex(16)}", f"bob-{secrets.token_hex(16)}"
    admin_key = f"admin-{secrets.token_hex(16)}"
    env = _environment(tmp, port, alice_key, bob_key)
    env["CALLFS_NODE_URL"] = base_url  # generated download links point at this node
    env["CALLFS_WORKERS"] = "1"  # one client at a time: a second worker only costs start-up
    manage(env, "migrate", "--noinput")
    manage({**env, "CALLFS_NEW_API_KEY": admin_key}, "create_api_key", "admin", "--superuser")
    # alice joins `staff` (a second key for her, unused) so that chgrp has a group to give.
    manage(env, "create_api_key", "alice", "--groups", "staff")
    log_path = tmp / "gunicorn.log"
    process = start_gunicorn(env, log_path, base_url)
    try:
        yield Node(base_url, alice_key, bob_key, admin_key, f"/cl-{secrets.token_hex(6)}",
                   log_path)
    finally:
        stop_gunicorn(process)


@pytest.fixture(scope="module")
def client(node) -> Iterator[Client]:
    with Client(node.base_url, node.alice_key, retries=2, backoff=0.05) as alice:
        yield alice


@pytest.fixture
def root(node, client, request) -> str:
    """A fresh remote directory for one test."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", request.node.name)[:60]
    path = f"{node.prefix}/{name}-{secrets.token_hex(3)}"
    client.mkdir(path, parents=True)
    return path


@pytest.fixture
def cli_env(node, monkeypatch, tmp_path) -> dict[str, str]:
    """The environment a user of the CLI has: the server and alice's key, no config file."""
    monkeypatch.setenv("CALLFS_URL", node.base_url)
    monkeypatch.setenv("CALLFS_KEY", node.alice_key)
    monkeypatch.setenv("CALLFS_CONFIG", str(tmp_path / "no-config.toml"))
    for name in ("CALLFS_PROFILE", "CALLFS_RETRIES", "CALLFS_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    return dict(os.environ)


@pytest.fixture
def callfs(cli_env):
    """callfs(*args) runs the CLI in-process (click's CliRunner) and returns the Result."""
    runner = CliRunner()

    def run(*args: str, input: bytes | None = None) -> Result:
        return runner.invoke(main, list(args), input=input, catch_exceptions=False)

    return run

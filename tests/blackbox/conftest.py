"""The real server under gunicorn (the project's gunicorn.conf.py) on a free loopback port.

SQLite in a temp dir by default; when DATABASE_URL is a PostgreSQL URL (and REDIS_URL is set) the
same suite runs against those services. Every path the tests touch lies below a fresh
`/bb-<random>` directory, so runs sharing one PostgreSQL database never collide.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from tests.servers import free_port, log_tail, manage, start_gunicorn, stop_gunicorn


def child_pids(pid: int) -> list[int]:
    """The direct children of `pid` (the gunicorn workers of a master)."""
    found: set[int] = set()
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                found.update(int(p) for p in (task / "children").read_text().split())
            except OSError:
                pass
    except OSError:
        pass
    if found:
        return sorted(found)
    for entry in Path("/proc").iterdir():  # kernels without the children file
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            found.add(int(entry.name))
    return sorted(found)


def rss_bytes(pid: int) -> int | None:
    """VmRSS of a process in bytes, None when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


@dataclass
class Server:
    base_url: str
    host: str
    port: int
    alice_key: str
    bob_key: str
    data_dir: Path
    pid: int
    log_path: Path
    prefix: str  # "/bb-<random>": every test path lies below it
    initial_workers: list[int] = field(default_factory=list)

    def url(self, path: str = "") -> str:
        """The /v1/files URL of `path` (relative to the run's prefix)."""
        return f"{self.base_url}/v1/files{self.prefix}/{path.lstrip('/')}"

    def raw_target(self, path: str = "") -> str:
        """The request target of `path` (relative to the prefix), for raw-socket requests."""
        return f"/v1/files{self.prefix}/{path.lstrip('/')}"

    def auth(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.alice_key}"}

    def session(self, key: str | None = None, *, keep_alive: bool = False) -> requests.Session:
        """A requests session as `key` (alice by default). Without keep_alive every request
        uses a fresh connection, so one test's connection trouble cannot leak into another
        (keep-alive has its own test)."""
        session = requests.Session()
        session.headers.update(self.auth(key))
        if not keep_alive:
            session.headers["Connection"] = "close"
        return session

    def workers(self) -> list[int]:
        return child_pids(self.pid)

    def log(self) -> str:
        return log_tail(self.log_path)


def _environment(tmp: Path, port: int, alice_key: str, bob_key: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # gunicorn.conf.py makes (and removes) its own
    database_url = os.environ.get("DATABASE_URL", "")
    if not database_url.startswith(("postgres://", "postgresql://", "pgsql://")):
        database_url = f"sqlite:///{tmp / 'db.sqlite3'}"
    env.update({
        "DATABASE_URL": database_url,
        "CALLFS_DATA_DIR": str(tmp / "data"),
        "CALLFS_API_KEYS": f"alice:{alice_key},bob:{bob_key}",
        "CALLFS_BIND": f"127.0.0.1:{port}",
        "CALLFS_WORKERS": "2",
        "CALLFS_LOG_LEVEL": "warning",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(32),
        "DJANGO_SETTINGS_MODULE": "callfs_site.settings",
    })
    if os.environ.get("REDIS_URL"):
        env["REDIS_URL"] = os.environ["REDIS_URL"]
    return env


@contextmanager
def running_server(tmp: Path, prefix: str, **extra_env: str) -> Iterator[Server]:
    """A migrated database and gunicorn with the project's settings (and `extra_env`) in `tmp`,
    its two workers up; stopped on exit."""
    port = free_port()
    alice_key, bob_key = f"alice-{secrets.token_hex(16)}", f"bob-{secrets.token_hex(16)}"
    env = _environment(tmp, port, alice_key, bob_key)
    env.update(extra_env)
    manage(env, "migrate", "--noinput")
    log_path = tmp / "gunicorn.log"
    base_url = f"http://127.0.0.1:{port}"
    process = start_gunicorn(env, log_path, base_url)
    try:
        # Both workers boot independently; give the second one a moment to be listed.
        deadline = time.monotonic() + 10
        while len(child_pids(process.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        srv = Server(
            base_url=base_url, host="127.0.0.1", port=port, alice_key=alice_key,
            bob_key=bob_key, data_dir=tmp / "data", pid=process.pid, log_path=log_path,
            prefix=f"/{prefix}-{secrets.token_hex(6)}",
        )
        srv.initial_workers = srv.workers()
        yield srv
    finally:
        stop_gunicorn(process)


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("callfs-blackbox"), "bb") as srv:
        yield srv

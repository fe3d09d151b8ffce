"""gunicorn.conf.py: worker count, CPU pinning and listening sockets, read as gunicorn reads it."""

from __future__ import annotations

import json
import os
import runpy
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from gunicorn.config import Config
from gunicorn.workers.ggevent import GeventWorker as StockGeventWorker

from callfs_site.workers import GeventWorker, SettledConfig

CONF = Path(__file__).resolve().parent.parent / "gunicorn.conf.py"


@pytest.fixture
def load_conf(monkeypatch, tmp_path):
    """The settings module gunicorn would execute, under the given environment."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))  # it makes one otherwise

    def load(**env: str) -> dict:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return runpy.run_path(str(CONF))

    return load


def spawn(conf: dict, server: SimpleNamespace) -> SimpleNamespace:
    worker = SimpleNamespace(cfg=Config())
    conf["pre_fork"](server, worker)
    server.WORKERS[len(server.WORKERS) + 1] = worker
    return worker


def test_one_worker_per_usable_cpu_by_default(load_conf, monkeypatch):
    monkeypatch.delenv("CALLFS_WORKERS", raising=False)
    conf = load_conf()
    assert conf["workers"] == len(os.sched_getaffinity(0))
    assert conf["worker_class"] == "callfs_site.workers.GeventWorker"
    assert issubclass(GeventWorker, StockGeventWorker)  # greenlets, never the sync worker
    assert conf["worker_connections"] == 2000
    assert "threads" not in conf  # a gevent worker has no request threads


def test_connections_and_idle_timeout_come_from_the_environment(load_conf):
    conf = load_conf(CALLFS_MAX_CONNECTIONS="50", CALLFS_IDLE_TIMEOUT="7",
                     CALLFS_PIN_WORKERS="0")
    assert conf["worker_connections"] == 50
    worker = SimpleNamespace(cfg=Config())
    conf["post_fork"](SimpleNamespace(), worker)
    assert worker.idle_timeout == 7.0


@pytest.mark.parametrize(("stock", "settled"), [("0", True), ("1", False)])
def test_a_worker_reads_its_settings_once_unless_in_stock_mode(load_conf, stock, settled):
    conf = load_conf(CALLFS_STOCK=stock, CALLFS_PIN_WORKERS="0")
    config = Config()
    worker = SimpleNamespace(cfg=config)
    conf["post_fork"](SimpleNamespace(), worker)
    assert isinstance(worker.cfg, SettledConfig) is settled
    assert worker.cfg.keepalive == config.keepalive


def test_workers_spread_over_the_cpus_and_respawns_fill_the_gap(load_conf):
    conf = load_conf(CALLFS_WORKERS="4")
    cpus = conf["_cpus"]
    server = SimpleNamespace(WORKERS={})
    placed = [spawn(conf, server).callfs_cpu for _ in range(2 * len(cpus))]
    assert sorted(placed) == sorted(cpus * 2)  # each CPU twice
    gone = server.WORKERS.pop(1)  # a worker dies: its replacement takes its CPU
    assert spawn(conf, server).callfs_cpu == gone.callfs_cpu


def test_pinning_can_be_switched_off(load_conf):
    conf = load_conf(CALLFS_PIN_WORKERS="0")
    worker = spawn(conf, SimpleNamespace(WORKERS={}))
    assert not hasattr(worker, "callfs_cpu")


PIN_THEN_UNPIN_A_THREAD = """
import json, os, sys, threading
from callfs_site.cpus import pin_process, unpin_thread
allowed = sorted(os.sched_getaffinity(0))
pin_process(allowed[-1])
seen = {}
def helper(name, unpin):
    if unpin:
        unpin_thread()
    seen[name] = sorted(os.sched_getaffinity(0))
for name, unpin in (("helper", True), ("plain", False)):
    thread = threading.Thread(target=helper, args=(name, unpin))
    thread.start()
    thread.join()
seen["main"] = sorted(os.sched_getaffinity(0))
print(json.dumps({"allowed": allowed, **seen}))
"""


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
def test_a_pinned_worker_s_helper_thread_unpins_only_itself():
    """post_fork pins the worker (threads inherit it); a large upload's helper threads run on
    every CPU the worker had before (callfs_site.cpus). In a child: pytest must stay unpinned."""
    result = subprocess.run([sys.executable, "-c", PIN_THEN_UNPIN_A_THREAD], cwd=CONF.parent,
                            capture_output=True, text=True, timeout=60, check=True)
    seen = json.loads(result.stdout)
    pinned = seen["allowed"][-1:]
    assert seen == {"allowed": seen["allowed"], "helper": seen["allowed"], "plain": pinned,
                    "main": pinned}


def test_post_fork_pins_the_worker_through_callfs_site_cpus(load_conf, monkeypatch):
    from callfs_site import cpus

    pinned = []
    monkeypatch.setattr(cpus, "pin_process", pinned.append)
    monkeypatch.setattr(sys, "setswitchinterval", lambda interval: None)
    conf = load_conf(CALLFS_PIN_WORKERS="1")
    worker = spawn(conf, SimpleNamespace(WORKERS={}))
    conf["post_fork"](SimpleNamespace(), worker)
    assert pinned == [worker.callfs_cpu]


@pytest.mark.parametrize(("bind", "reuse_port"), [("127.0.0.1:8123", True),
                                                  ("unix:/tmp/callfs.sock", False),
                                                  ("fd://3", False)])
def test_own_listening_socket_per_worker_only_for_tcp(load_conf, bind, reuse_port):
    assert load_conf(CALLFS_BIND=bind)["reuse_port"] is reuse_port


def test_systemd_socket_activation_keeps_the_shared_socket(load_conf, monkeypatch):
    monkeypatch.setenv("LISTEN_FDS", "1")
    assert load_conf(CALLFS_BIND="127.0.0.1:8123")["reuse_port"] is False


@pytest.mark.parametrize("holder_reuses_port", [False, True])
def test_a_port_held_by_another_program_stops_gunicorn_with_one_line(tmp_path,
                                                                     holder_reuses_port):
    """Workers bind their own sockets: without the master's check they would respawn forever
    (another program) or share the port unnoticed (another instance, also SO_REUSEPORT)."""
    with socket.socket() as holder:
        if holder_reuses_port:
            holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        env = {**os.environ, "CALLFS_BIND": f"127.0.0.1:{port}",
               "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3",
               "CALLFS_DATA_DIR": str(tmp_path / "data")}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        result = subprocess.run([sys.executable, "-m", "gunicorn", "-c", str(CONF)],
                                cwd=CONF.parent, env=env, capture_output=True, text=True,
                                timeout=60)
    assert result.returncode == 2
    assert f"callfs: cannot listen on 127.0.0.1:{port}: Address already in use" in result.stderr

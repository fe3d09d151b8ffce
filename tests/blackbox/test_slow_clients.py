"""Slow and stalled clients against the real server under gunicorn: the issue's rules, scaled down.

The issue asks a node to hold 256 slow downloads and 256 slow uploads (4 MiB at 128 KiB/s) and
200 stalled connections at once (`make bench` measures that, beside nginx). Here the same load
generator (bench/slow_clients.py) runs a smaller version with the same pass rules against a
gunicorn of its own with a 3 s idle timeout, so stalls end quickly: every transfer starts at once
and arrives intact, small requests meanwhile stay fast, every stalled connection is closed after
the idle timeout, a stalled upload stores nothing and is counted, a slow transfer that keeps
moving is never cut, and a worker's memory grows by a small amount per connection at most.
"""

from __future__ import annotations

import os
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from bench import slow_clients
from tests.blackbox.conftest import Server, running_server

pytestmark = pytest.mark.blackbox

KiB = 1024
MiB = 1024 * KiB
IDLE = 3.0  # CALLFS_IDLE_TIMEOUT for this module's server
KEEPALIVE = 5.0  # gunicorn.conf.py: the longest wait for a request head
MARGIN = 3.0  # scheduling slack on a busy 2-core machine
TIMEOUT = 30
# Memory: each worker may grow by RSS_PER_CONNECTION for every connection it holds (a greenlet,
# its socket objects and an upload's read buffer of 64 KiB, a copy or two of it, allocator slack)
# on top of RSS_FIXED for everything else (a warm-up run alone grew a fresh worker by 6-13 MiB).
# Slow uploads holding a 1 MiB read buffer each (an early gevent version) grew a worker by 40 MiB.
RSS_PER_CONNECTION = 128 * KiB
RSS_FIXED = 16 * MiB
UPLOADS_TIMED_OUT = "callfs_uploads_timed_out_total"
IDLE_CLOSES = "callfs_idle_connections_closed_total"


@pytest.fixture(scope="module")
def node(tmp_path_factory) -> Iterator[Server]:
    """A server of its own: two workers, a 3 s idle timeout."""
    with running_server(tmp_path_factory.mktemp("callfs-slow-clients"), "slow",
                        CALLFS_IDLE_TIMEOUT=f"{IDLE:g}", CALLFS_WORKERS="2") as srv:
        yield srv


def metric(node: Server, name: str) -> float:
    """A counter's value in /metrics (all workers added up; 0 when not yet reported)."""
    response = requests.get(f"{node.base_url}/metrics", headers=node.auth(), timeout=TIMEOUT)
    assert response.status_code == 200, response.text[:300]
    return sum(float(line.rsplit(" ", 1)[1]) for line in response.text.splitlines()
               if line.startswith((name + " ", name + "{")))


def load(node: Server, root: str, **kwargs) -> dict:
    return slow_clients.run(node.base_url, node.auth(), "/v1/files", root=node.prefix + root,
                            rss_pids=node.workers, **kwargs)


def describe(report: dict) -> str:
    """The parts of a report worth reading when a rule fails."""
    keep = ("downloads", "uploads", "stalled", "stalled_puts_stored", "probes", "rss")
    return "\n".join(f"{key}: {report[key]}" for key in keep if key in report)


def test_slow_and_stalled_clients_are_all_served(node: Server):
    """64 slow downloads and 64 slow uploads (512 KiB at 64 KiB/s: 8 s, past the idle timeout)
    and 50 stalled connections, all at once. Every rule is checked, and all broken ones are
    reported together."""
    # Warm-up: a fresh worker's first requests fill caches and the allocator's pools, once;
    # that is not a cost per connection.
    load(node, "/warm", downloads=16, uploads=16, stalled=10, size=512 * KiB, rate=256 * KiB,
         stall_limit=IDLE + KEEPALIVE + MARGIN)
    timed_out, idle_closes = metric(node, UPLOADS_TIMED_OUT), metric(node, IDLE_CLOSES)

    size, rate = 512 * KiB, 64 * KiB
    report = load(node, "/load", downloads=64, uploads=64, stalled=50, size=size, rate=rate,
                  stall_limit=IDLE + KEEPALIVE + MARGIN)
    broken = []

    def check(ok: bool, rule: str) -> None:
        if not ok:
            broken.append(rule)

    # Every transfer started at once, finished in about the time its rate takes, and is intact.
    for kind in ("downloads", "uploads"):
        transfers = report[kind]
        check(transfers["intact"] == transfers["count"] == 64, f"{kind}: all 64 intact")
        # a response head (upload: 100 Continue) for each, soon
        check(transfers["ttfb_seen"] == 64, f"{kind}: all 64 started")
        check(transfers["ttfb_s"]["max"] < 2.0, f"{kind}: every one started within 2 s")
        check((transfers["duration_s"]["max"] or 1e9) < size / rate + MARGIN,
              f"{kind}: every one done within {size / rate + MARGIN:g} s")

    # Small requests, one at a time, stayed fast throughout.
    probes = report["probes"]
    check(probes["count"] >= 50 and probes["errors"] == 0, "probes: at least 50, no errors")
    check((probes["median_ms"] or 1e9) < 50, "probes: median under 50 ms")
    check((probes["max_ms"] or 1e9) < 1000, "probes: none over 1 s")

    # Each stalled connection was closed by the server, after the idle timeout (a request head
    # waits min(keep-alive, idle timeout)), and the stalled uploads stored nothing.
    stalled = report["stalled"]
    check(stalled["closed"] == stalled["count"] == 50, "stalled: all 50 closed by the server")
    check((stalled["closed_after_s"]["min"] or 0) > IDLE - 0.5,
          "stalled: none closed before the idle timeout")
    check((stalled["closed_after_s"]["max"] or 1e9) < IDLE + KEEPALIVE + MARGIN,
          f"stalled: all closed within {IDLE + KEEPALIVE + MARGIN:g} s")
    check(report["stalled_puts_stored"] == 0, "stalled uploads: nothing stored")
    put_stalls = stalled["by_kind"]["put_body"]["count"]
    readers = stalled["by_kind"]["stopped_reader"]["count"]
    counted = metric(node, UPLOADS_TIMED_OUT) - timed_out
    check(counted == put_stalls,
          f"{UPLOADS_TIMED_OUT}: +{put_stalls} (one per stalled upload), got +{counted:g}")
    counted = metric(node, IDLE_CLOSES) - idle_closes
    check(counted >= readers,
          f"{IDLE_CLOSES}: at least +{readers} (the stopped readers), got +{counted:g}")

    # Memory: a small cost per connection held, no more.
    rss = report["rss"]
    budget = RSS_FIXED + RSS_PER_CONNECTION * rss["connections_per_worker"]
    for pid, worker in rss["workers"].items():
        check(worker["growth_kib"] * KiB <= budget,
              f"RSS: worker {pid} grew {worker['growth_kib'] / 1024:.1f} MiB, budget "
              f"{budget / MiB:.1f} MiB for {rss['connections_per_worker']:.0f} connections")

    assert not broken, "broken rules:\n  " + "\n  ".join(broken) + "\n" + describe(report)


def _blob_files(node: Server) -> dict[Path, int]:
    """Every non-empty file under the data directory's blobs/ (upload slots are empty)."""
    blobs = node.data_dir / "blobs"
    found = {}
    for path in blobs.rglob("*") if blobs.exists() else ():
        try:
            if path.is_file() and (size := path.stat().st_size):
                found[path] = size
        except FileNotFoundError:  # a slot taken meanwhile
            continue
    return found


def test_an_upload_that_stops_mid_body_is_closed_after_the_idle_timeout(node: Server):
    session = node.session()
    target = node.raw_target("stalled-body/never.bin")
    timed_out = metric(node, UPLOADS_TIMED_OUT)
    blobs_before = set(_blob_files(node))

    sock = socket.create_connection((node.host, node.port), timeout=TIMEOUT)
    stored: list[bytes] = []
    latencies: list[float] = []
    response = b""
    try:
        sock.sendall(f"PUT {target} HTTP/1.1\r\nHost: {node.host}:{node.port}\r\n"
                     f"Authorization: Bearer {node.alice_key}\r\nContent-Length: {MiB}\r\n\r\n"
                     .encode() + os.urandom(100 * KiB))
        stalled_at = time.monotonic()
        closed_after = None
        turn = 0
        # Meanwhile the node answers everyone else: a round of small requests, then a look at
        # the stalled connection, until the server closes it (or long past the timeout).
        while closed_after is None and time.monotonic() - stalled_at < IDLE + KEEPALIVE + MARGIN:
            body = f"written during the stall, turn {turn}\n".encode() * 100
            for method, url, data in (("PUT", node.url(f"stalled-body/other-{turn}.bin"), body),
                                      ("GET", node.url(f"stalled-body/other-{turn}.bin"), None),
                                      ("GET", f"{node.base_url}/health", None)):
                started = time.monotonic()
                answer = session.request(method, url, data=data, timeout=TIMEOUT)
                latencies.append(time.monotonic() - started)
                assert answer.status_code in (200, 201), (method, url, answer.status_code)
            stored.append(body)
            turn += 1
            if select.select([sock], [], [], 0.1)[0]:
                try:
                    chunk = sock.recv(64 * KiB)
                except ConnectionResetError:
                    chunk = b""
                response += chunk
                if not chunk:
                    closed_after = time.monotonic() - stalled_at
    finally:
        sock.close()

    assert closed_after is not None, f"still open {IDLE + KEEPALIVE + MARGIN:g} s into the stall"
    assert IDLE - 0.5 < closed_after < IDLE + MARGIN, closed_after
    assert len(latencies) >= 9 and max(latencies) < 1.0, latencies
    if response:  # an answer before closing may only be an error
        assert response.startswith(b"HTTP/1.1 4"), response[:300]

    # Nothing of it was stored: no file, no partial blob, no temp file; and it was counted.
    missing = session.get(node.url("stalled-body/never.bin"), timeout=TIMEOUT)
    assert missing.status_code == 404, missing.text[:300]
    new_blobs = {path: path.read_bytes() for path in set(_blob_files(node)) - blobs_before}
    strays = [str(path) for path, data in new_blobs.items() if data not in stored]
    assert not strays, f"blobs that are none of the files written: {strays}"
    tmp = node.data_dir / "tmp"  # upload temp files (and nothing else) live there
    left = sorted(p.name for p in tmp.iterdir()) if tmp.exists() else []
    assert not left, f"left in {tmp}: {left}"
    assert metric(node, UPLOADS_TIMED_OUT) - timed_out == 1


def test_a_stopped_reader_is_cut_but_a_slow_moving_transfer_is_not(node: Server):
    """A download whose client stops reading is closed after the idle timeout and counted; a
    download and an upload moving 64 KiB every 0.5 s for 8 s (past the 3 s idle timeout) are
    not cut."""
    idle_closes = metric(node, IDLE_CLOSES)
    report = load(node, "/moving", downloads=1, uploads=1, stalled=2,
                  stall_kinds=["stopped_reader"], size=MiB, rate=128 * KiB, piece=64 * KiB,
                  stall_limit=IDLE + KEEPALIVE + MARGIN)
    info = describe(report)
    for kind in ("downloads", "uploads"):
        assert report[kind]["intact"] == 1, info
        assert report[kind]["duration_s"]["max"] > 2 * IDLE, info
    stalled = report["stalled"]
    assert stalled["closed"] == 2, info
    assert IDLE - 0.5 < stalled["closed_after_s"]["min"], info
    assert stalled["closed_after_s"]["max"] < IDLE + MARGIN, info
    assert metric(node, IDLE_CLOSES) - idle_closes == 2, info


def test_server_survived_without_errors(node: Server):
    assert requests.get(f"{node.base_url}/health", timeout=TIMEOUT).status_code == 200
    assert node.workers() == node.initial_workers, \
        f"workers were replaced (a crash?): {node.initial_workers} -> {node.workers()}"
    log = node.log()
    bad = [line for line in log.splitlines() if "Traceback" in line or "[ERROR]" in line
           or " ERROR " in line or "CRITICAL" in line]
    assert not bad, f"{len(bad)} error lines in the server log:\n{log[-3000:]}"

"""CALLFS_REPLICAS=2 on three real nodes: losing a node loses no file and stops no read.

One story, as the operator lives it: files written through every node; a node killed (SIGKILL)
and every file still read, in full, by range and by link; writes, overwrites and deletes while it
is down; the node back without old bytes coming back; repair; another node killed; a wiped disk
repaired; fsck clean everywhere.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import time

import pytest
import requests

from tests.cluster.conftest import Cluster, start_cluster
from tests.servers import manage

pytestmark = pytest.mark.cluster

FILES = 100


@pytest.fixture(scope="module")
def replicated(tmp_path_factory):
    # Background repair off: the test runs `repair` itself, at the moments it names.
    yield from start_cluster(tmp_path_factory, CALLFS_REPLICAS="2", CALLFS_REPAIR_INTERVAL="0")


def content(number: int, version: int = 1) -> bytes:
    size = 300_000 + number * 1000 if number % 10 == 0 else 1000 + number * 37  # some stream
    seed = hashlib.sha256(f"{number}-{version}".encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


def blobs_on(node) -> int:
    root = node.data_dir / "blobs"
    return sum(1 for path in root.rglob("*") if path.is_file() and path.stat().st_size) \
        if root.exists() else 0


def read(cluster: Cluster, node: int, number: int, **headers) -> requests.Response:
    started = time.monotonic()
    response = cluster.session().get(cluster.url(node, f"r/{number}.bin"), headers=headers,
                                     timeout=10)
    assert time.monotonic() - started < 1.0, f"file {number} through node {node} took too long"
    return response


def assert_every_file_reads(cluster: Cluster, via: list[int], expected: dict[int, bytes]):
    for number, data in expected.items():
        node = via[number % len(via)]
        full = read(cluster, node, number)
        assert full.status_code == 200, (number, node, full.text[:200])
        assert full.content == data, f"file {number} through node {node}"
        ranged = read(cluster, node, number, Range="bytes=10-99")
        assert (ranged.status_code, ranged.content) == (206, data[10:100])


def link_download(cluster: Cluster, node: int, number: int) -> bytes:
    generated = cluster.session().post(
        f"{cluster.nodes[node].base_url}/v1/links/generate",
        data=json.dumps({"path": f"{cluster.prefix}/r/{number}.bin", "expiry_seconds": 60}))
    assert generated.status_code == 201, generated.text
    started = time.monotonic()
    response = requests.get(f"{cluster.nodes[node].base_url}/download/"
                            f"{generated.json()['token']}", timeout=10)
    assert time.monotonic() - started < 1.0
    assert response.status_code == 200
    return response.content


def repair(cluster: Cluster, node: int) -> str:
    return manage(cluster.nodes[node].env, "repair")


def test_losing_nodes_loses_no_file(replicated: Cluster):
    cluster, session = replicated, replicated.session()
    expected = {}
    for number in range(FILES):
        data = content(number)
        response = session.put(cluster.url(number % 3, f"r/{number}.bin"), data=data)
        assert response.status_code == 201, response.text
        expected[number] = data
    # Each file is on two nodes: the node that took it and one more.
    assert sum(blobs_on(node) for node in cluster.nodes) == 2 * FILES
    assert "0 under-replicated" in manage(cluster.nodes[0].env, "repair", "--no-verify")

    cluster.nodes[1].kill()
    assert_every_file_reads(cluster, [0, 2], expected)
    for number, data in expected.items():  # a third of them had their primary on node 2
        assert link_download(cluster, number % 2 * 2, number) == data
        time.sleep(0.1)  # within the download rate limit of a client (API.md §9: 10/s)

    # Writes while node 2 is down: new files, overwrites and deletes.
    for number in range(FILES, FILES + 10):
        data = content(number)
        assert session.put(cluster.url(number % 2 * 2, f"r/{number}.bin"),
                           data=data).status_code == 201
        expected[number] = data
    for number in range(10, 20):
        data = content(number, version=2)
        assert session.put(cluster.url(0, f"r/{number}.bin"), data=data).status_code == 200
        expected[number] = data
    for number in range(20, 30):
        assert session.delete(cluster.url(2, f"r/{number}.bin")).status_code == 204
        del expected[number]

    cluster.nodes[1].start()
    for number in range(20, 30):  # deleted stay deleted, everywhere
        for node in range(3):
            assert session.get(cluster.url(node, f"r/{number}.bin")).status_code == 404
    for number in range(10, 20):  # the new bytes, everywhere
        for node in range(3):
            assert session.get(cluster.url(node, f"r/{number}.bin")).content == expected[number]

    summary = repair(cluster, 1)
    assert "0 without a reachable copy, 0 under-replicated" in summary, summary
    # Converged: the old bytes are gone from the returning node too (2 copies of each file).
    assert sum(blobs_on(node) for node in cluster.nodes) == 2 * len(expected)

    cluster.nodes[2].kill()
    assert_every_file_reads(cluster, [0, 1], expected)
    cluster.nodes[2].start()

    # A wiped disk: node 2 comes back empty, repair copies everything it should hold again.
    cluster.nodes[1].kill()
    shutil.rmtree(cluster.nodes[1].data_dir)
    os.makedirs(cluster.nodes[1].data_dir)
    cluster.nodes[1].start()
    summary = repair(cluster, 0)
    assert "0 under-replicated" in summary and " 0 copies made" not in summary, summary
    assert sum(blobs_on(node) for node in cluster.nodes) == 2 * len(expected)
    for node in cluster.nodes:
        report = manage(node.env, "fsck", "--grace", "0")
        assert "0 missing, 0 wrong size, 0 corrupt, 0 orphan blobs" in report, \
            (node.node_id, report)
    assert_every_file_reads(cluster, [0, 1, 2], expected)


def files_in(cluster: Cluster) -> int:
    listing = cluster.session().get(
        f"{cluster.nodes[0].base_url}/v1/directories{cluster.prefix}?recursive=true")
    assert listing.status_code == 200, listing.text
    return sum(1 for entry in listing.json()["items"] if entry["type"] == "file")


def test_copies_moves_and_backend_moves_keep_two_copies(replicated: Cluster):
    cluster, session = replicated, replicated.session()
    time.sleep(2.5)  # nodes restarted just before: each node's view of the live ones is renewed
    data = content(7, version=3)
    assert session.put(cluster.url(0, "m/a.bin"), data=data).status_code == 201
    copied = session.put(cluster.url(1, "m/b.bin"),
                         headers={"X-CallFS-Copy-Source": f"{cluster.prefix}/m/a.bin"})
    assert copied.status_code == 201, copied.text
    moved = session.patch(cluster.url(2, "m/b.bin"), data=json.dumps(
        {"destination": f"{cluster.prefix}/m/c.bin", "instance": cluster.nodes[2].node_id}),
        headers={"Content-Type": "application/json"})
    assert moved.status_code == 200, moved.text
    assert sum(blobs_on(node) for node in cluster.nodes) == 2 * files_in(cluster)
    for node in range(3):
        assert session.get(cluster.url(node, "m/c.bin")).content == data
    assert "0 under-replicated" in manage(cluster.nodes[0].env, "repair", "--no-verify")


def test_fsck_repair_replaces_a_corrupt_copy_from_a_good_one(replicated: Cluster):
    cluster, session = replicated, replicated.session()
    data = content(8, version=3)
    assert session.put(cluster.url(0, "c/f.bin"), data=data).status_code == 201
    node = cluster.nodes[0]
    head = session.head(cluster.url(0, "c/f.bin"))  # written through node 1: its primary
    assert head.headers["X-CallFS-Instance-ID"] == node.node_id
    [blob] = [path for path in (node.data_dir / "blobs").rglob("*")
              if path.is_file() and path.stat().st_size == len(data)
              and path.read_bytes() == data]
    blob.write_bytes(b"X" + data[1:])  # bit rot: same size, other bytes
    assert "0 corrupt" in manage(node.env, "fsck", "--quick")  # sizes only: unnoticed
    report = manage(node.env, "fsck", "--repair")
    assert f"corrupt (sha256 differs): {cluster.prefix}/c/f.bin" in report, report
    assert "0 corrupt" in manage(node.env, "fsck")
    assert session.get(cluster.url(0, "c/f.bin")).content == data


def test_a_copy_that_fails_mid_write_is_dropped_and_the_write_succeeds(replicated: Cluster):
    """The node receiving the second copy dies while the upload streams: the upload still
    succeeds, intact; that node keeps nothing of it but a temp file, and repair makes the copy."""
    cluster, session = replicated, replicated.session()
    chunk = os.urandom(1024 * 1024)
    data = chunk * 12
    receiving: list = []

    def slow_body():
        for _ in range(12):
            yield chunk
            time.sleep(0.15)

    def watch_for_the_copy():
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not receiving:
            for node in cluster.nodes[1:]:
                if any((node.data_dir / "tmp").glob(".upload-*")):
                    receiving.append(node)
                    node.kill()
                    return
            time.sleep(0.02)

    watcher = threading.Thread(target=watch_for_the_copy)
    watcher.start()
    response = session.put(cluster.url(0, "w/streamed.bin"), data=slow_body())
    watcher.join()
    assert response.status_code == 201, response.text
    assert receiving, "no node received the second copy"
    [dead] = receiving
    assert session.get(cluster.url(0, "w/streamed.bin")).content == data
    assert not any(path.is_file() and path.stat().st_size == len(data)
                   for path in (dead.data_dir / "blobs").rglob("*"))
    dead.start()
    assert "0 under-replicated" in repair(cluster, 0)
    assert any(path.is_file() and path.stat().st_size == len(data)
               for node in cluster.nodes[1:] for path in (node.data_dir / "blobs").rglob("*"))


def test_drain_node_then_remove_node(replicated: Cluster):
    """Last in this module: the cluster loses node 3 for good."""
    cluster, session = replicated, replicated.session()
    leaving = cluster.nodes[2]
    files = files_in(cluster)
    summary = manage(cluster.nodes[0].env, "drain_node", leaving.node_id)
    assert ", 0 left" in summary, summary
    nodes = session.get(f"{cluster.nodes[0].base_url}/v1/nodes/").json()
    assert [node["draining"] for node in nodes if node["id"] == leaving.node_id] == [True]
    assert blobs_on(leaving) == 0
    assert sum(blobs_on(node) for node in cluster.nodes[:2]) == 2 * files
    leaving.stop()
    manage(cluster.nodes[0].env, "remove_node", leaving.node_id)
    listing = session.get(f"{cluster.nodes[0].base_url}/v1/directories{cluster.prefix}/r")
    for entry in listing.json()["items"]:
        response = session.get(cluster.url(0, f"r/{entry['name']}"))
        assert response.status_code == 200
        assert hashlib.sha256(response.content).hexdigest() == response.headers["ETag"].strip('"')


@pytest.fixture(scope="module")
def self_healing(tmp_path_factory):
    yield from start_cluster(tmp_path_factory, CALLFS_REPLICAS="2", CALLFS_REPAIR_INTERVAL="1")


def test_nodes_repair_in_the_background(self_healing: Cluster):
    """Files written while the other nodes were down get their second copy by themselves once
    the nodes are back, and the gauge says so."""
    cluster, session = self_healing, self_healing.session()
    for node in cluster.nodes[1:]:
        node.kill()
    for number in range(5):
        response = session.put(cluster.url(0, f"b/{number}.bin"), data=content(number))
        assert response.status_code == 201, response.text
    assert blobs_on(cluster.nodes[0]) == 5
    for node in cluster.nodes[1:]:
        node.start()
    deadline = time.monotonic() + 45
    while sum(blobs_on(node) for node in cluster.nodes) < 10 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert sum(blobs_on(node) for node in cluster.nodes) == 10
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        metrics = session.get(f"{cluster.nodes[0].base_url}/metrics").text
        if "callfs_under_replicated_files 0.0" in metrics:
            break
        time.sleep(0.5)
    assert "callfs_under_replicated_files 0.0" in metrics
    assert "callfs_repair_copies_total 5.0" in metrics

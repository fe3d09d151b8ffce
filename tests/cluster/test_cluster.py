"""Cross-node behaviour of three real nodes (API.md §11, issue 7)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import secrets
import time
from functools import partial

import pytest
import requests

from cluster import signing
from tests.helpers import run_in_threads, stored_blobs

pytestmark = pytest.mark.cluster


def put(cluster, node: int, path: str, data: bytes):
    return cluster.session().put(cluster.url(node, path), data=data)


def get(cluster, node: int, path: str, **kwargs):
    return cluster.session().get(cluster.url(node, path), **kwargs)


def test_every_node_is_registered_and_up(cluster):
    response = cluster.session().get(f"{cluster.nodes[1].base_url}/v1/nodes/")
    assert response.status_code == 200
    listed = {n["id"]: n for n in response.json()}
    for node in cluster.nodes:
        assert listed[node.node_id]["state"] == "up"
        assert listed[node.node_id]["url"] == node.base_url


def test_a_file_written_on_one_node_is_read_from_every_node(cluster):
    data = os.urandom(300_000)
    assert put(cluster, 0, "read/a.bin", data).status_code == 201
    for node in (0, 1, 2):
        response = get(cluster, node, "read/a.bin")
        assert response.status_code == 200
        assert response.content == data
        assert response.headers["X-CallFS-Instance-ID"] == cluster.nodes[0].node_id
        assert response.headers["ETag"] == f'"{hashlib.sha256(data).hexdigest()}"'
        head = cluster.session().head(cluster.url(node, "read/a.bin"))
        assert head.headers["X-CallFS-Instance-ID"] == cluster.nodes[0].node_id
        assert head.headers["X-CallFS-Size"] == str(len(data))
    ranged = get(cluster, 2, "read/a.bin", headers={"Range": "bytes=1000-1999"})
    assert ranged.status_code == 206
    assert ranged.content == data[1000:2000]
    assert ranged.headers["Content-Range"] == f"bytes 1000-1999/{len(data)}"


def test_overwrite_through_another_node_keeps_the_file_on_its_node(cluster):
    assert put(cluster, 0, "ow/f.txt", b"version one").status_code == 201
    before = stored_blobs(cluster.nodes[0].data_dir)
    assert put(cluster, 1, "ow/f.txt", b"version two, longer").status_code == 200
    for node in (0, 1, 2):
        response = get(cluster, node, "ow/f.txt")
        assert response.content == b"version two, longer"
        assert response.headers["X-CallFS-Instance-ID"] == cluster.nodes[0].node_id
    after = stored_blobs(cluster.nodes[0].data_dir)
    assert len(after - before) == 1  # the new bytes landed on node 1's disk...
    assert not stored_blobs(cluster.nodes[1].data_dir) & (after - before)  # ...not on node 2's


def test_move_copy_and_delete_from_other_nodes(cluster):
    data = b"moving bytes " * 1000
    assert put(cluster, 0, "mv/src.bin", data).status_code == 201
    response = cluster.session().patch(cluster.url(2, "mv/src.bin"),
                                       data=json.dumps({"destination": f"{cluster.prefix}/mv/"
                                                                       "dst.bin"}))
    assert response.status_code == 200, response.text
    assert get(cluster, 1, "mv/src.bin").status_code == 404
    assert get(cluster, 1, "mv/dst.bin").content == data

    copy = cluster.session().put(cluster.url(1, "mv/copy.bin"),
                                 headers={"X-CallFS-Copy-Source": f"{cluster.prefix}/mv/dst.bin"})
    assert copy.status_code == 201, copy.text
    copied = get(cluster, 2, "mv/copy.bin")
    assert copied.content == data
    assert copied.headers["X-CallFS-Instance-ID"] == cluster.nodes[1].node_id

    key_before = stored_blobs(cluster.nodes[0].data_dir)
    assert cluster.session().delete(cluster.url(2, "mv/dst.bin")).status_code == 204
    for node in (0, 1, 2):
        assert get(cluster, node, "mv/dst.bin").status_code == 404
    deadline = time.monotonic() + 5  # the owner deletes the blob right after the commit
    while stored_blobs(cluster.nodes[0].data_dir) == key_before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(key_before - stored_blobs(cluster.nodes[0].data_dir)) == 1


def test_recursive_delete_spanning_nodes(cluster):
    for node in (0, 1, 2):
        assert put(cluster, node, f"tree/n{node}.txt", b"x").status_code == 201
    response = cluster.session().delete(cluster.url(1, "tree"), params={"recursive": "true"})
    assert response.status_code == 204
    assert get(cluster, 0, "tree").status_code == 404


def test_create_conflict_across_nodes_is_the_409_object(cluster):
    assert put(cluster, 0, "conflict.txt", b"first").status_code == 201
    response = cluster.session().post(cluster.url(1, "conflict.txt"), data=b"second")
    assert response.status_code == 409
    body = response.json()
    assert body["error"] == "Resource exists on another server"
    assert body["instance_id"] == cluster.nodes[0].node_id
    assert body["existing_path"] == f"{cluster.prefix}/conflict.txt"
    assert body["backend_type"] == "localfs"
    assert body["update_url"].startswith(cluster.nodes[0].base_url)
    assert body["code"] == "FILE_ALREADY_EXISTS" and body["message"]
    assert get(cluster, 2, "conflict.txt").content == b"first"


def test_concurrent_puts_through_three_nodes_end_with_one_writers_bytes(cluster):
    bodies = [secrets.token_bytes(64 * 1024) for _ in range(6)]
    statuses: list[int] = []

    def writer(index: int) -> None:
        response = cluster.session().put(cluster.url(index % 3, "race.bin"), data=bodies[index])
        statuses.append(response.status_code)

    run_in_threads(*(partial(writer, i) for i in range(len(bodies))))
    assert sorted(set(statuses)) <= [200, 201], statuses
    final = {get(cluster, node, "race.bin").content for node in (0, 1, 2)}
    assert len(final) == 1
    assert final.pop() in bodies


def test_patch_instance_moves_the_bytes_to_another_node(cluster):
    data = os.urandom(50_000)
    assert put(cluster, 0, "inst/f.bin", data).status_code == 201
    node1_before = stored_blobs(cluster.nodes[0].data_dir)
    response = cluster.session().patch(
        cluster.url(1, "inst/f.bin"),
        data=json.dumps({"destination": f"{cluster.prefix}/inst/f.bin",
                         "instance": cluster.nodes[2].node_id}))
    assert response.status_code == 200, response.text
    head = cluster.session().head(cluster.url(0, "inst/f.bin"))
    assert head.headers["X-CallFS-Instance-ID"] == cluster.nodes[2].node_id
    assert get(cluster, 0, "inst/f.bin").content == data
    deadline = time.monotonic() + 5
    while stored_blobs(cluster.nodes[0].data_dir) == node1_before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(node1_before - stored_blobs(cluster.nodes[0].data_dir)) == 1
    unknown = cluster.session().patch(cluster.url(0, "inst/f.bin"),
                                      data=json.dumps({"destination": f"{cluster.prefix}/x",
                                                       "instance": "no-such-node"}))
    assert unknown.status_code == 400


def test_internal_blob_api_takes_only_signed_requests(cluster, settings):
    """Issue 20: API keys and the bare internal secret are refused; a request signed for the
    node is served once, and refused on replay or at another node."""
    node = cluster.nodes[0]
    target = f"/v1/internal/blobs/{'0' * 32}"
    url = node.base_url + target
    assert cluster.session().get(url).status_code == 401
    assert requests.get(url, timeout=5).status_code == 401
    for authorization in (f"Bearer {cluster.secret}", cluster.secret):
        refused = requests.get(url, headers={"Authorization": authorization}, timeout=5)
        assert refused.status_code == 401
        assert refused.json()["code"] == "AUTHENTICATION_FAILED"
    settings.CALLFS = dataclasses.replace(settings.CALLFS, internal_secret=cluster.secret)
    headers = signing.sign("GET", target, node.node_id)
    assert requests.get(url, headers=headers, timeout=5).status_code == 404  # no such blob
    assert requests.get(url, headers=headers, timeout=5).status_code == 401  # replayed
    elsewhere = signing.sign("GET", target, node.node_id)
    assert requests.get(cluster.nodes[1].base_url + target, headers=elsewhere,
                        timeout=5).status_code == 401


def test_large_uploads_relayed_to_the_files_node_arrive_intact(cluster):
    """A relayed overwrite streams with a signed trailer (several chunks); with the client's
    X-CallFS-SHA256 the digest itself is signed, and a wrong one stores nothing."""
    data = os.urandom(3 * 1024 * 1024 + 17)
    assert put(cluster, 0, "relay/big.bin", b"first").status_code == 201
    assert put(cluster, 1, "relay/big.bin", data).status_code == 200
    assert get(cluster, 2, "relay/big.bin").content == data
    digest = hashlib.sha256(data[::-1]).hexdigest()
    response = cluster.session().put(cluster.url(2, "relay/big.bin"), data=data[::-1],
                                     headers={"X-CallFS-SHA256": digest})
    assert response.status_code == 200, response.text
    wrong = cluster.session().put(cluster.url(1, "relay/big.bin"), data=data,
                                  headers={"X-CallFS-SHA256": digest})
    assert wrong.status_code == 400 and wrong.json()["code"] == "CHECKSUM_MISMATCH"
    response = get(cluster, 1, "relay/big.bin")
    assert response.content == data[::-1]
    assert response.headers["X-CallFS-Instance-ID"] == cluster.nodes[0].node_id


def test_a_dead_node_gives_a_quick_502_and_nothing_is_lost(cluster):
    data = b"kept on node three"
    assert put(cluster, 2, "dead/f.txt", data).status_code == 201
    assert put(cluster, 0, "dead/alive.txt", b"alive").status_code == 201
    dead = cluster.nodes[2]
    dead.kill()
    try:
        started = time.monotonic()
        response = get(cluster, 0, "dead/f.txt")
        assert time.monotonic() - started < 5
        assert response.status_code in (502, 503)
        assert response.json()["code"] == "NODE_UNAVAILABLE"
        assert cluster.session().delete(cluster.url(1, "dead/f.txt")).status_code in (502, 503)
        overwrite = put(cluster, 1, "dead/f.txt", b"lost?")
        assert overwrite.status_code in (502, 503)
        # Everything else keeps working: metadata, and files on the live nodes.
        assert cluster.session().head(cluster.url(0, "dead/f.txt")).status_code == 200
        assert get(cluster, 1, "dead/alive.txt").content == b"alive"
        listing = cluster.session().get(cluster.url(1, "dead", api="directories"))
        assert {i["name"] for i in listing.json()["items"]} == {"f.txt", "alive.txt"}
    finally:
        dead.start()
    assert get(cluster, 0, "dead/f.txt").content == data


def test_a_link_made_on_one_node_is_redeemed_on_another(cluster):
    data = b"shared through a link"
    assert put(cluster, 0, "links/f.txt", data).status_code == 201
    generated = cluster.session().post(
        f"{cluster.nodes[0].base_url}/v1/links/generate",
        data=json.dumps({"path": f"{cluster.prefix}/links/f.txt", "expiry_seconds": 60}))
    assert generated.status_code == 201, generated.text
    token = generated.json()["token"]
    first = requests.get(f"{cluster.nodes[1].base_url}/download/{token}", timeout=10)
    assert first.status_code == 200
    assert first.content == data
    again = requests.get(f"{cluster.nodes[2].base_url}/download/{token}", timeout=10)
    assert again.status_code == 410

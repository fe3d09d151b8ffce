"""Replicas on one node: the rules that need no peer (the three-node story is in
tests/cluster/test_replicas.py)."""

from __future__ import annotations

import dataclasses
from io import StringIO

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command

from callfs_site.config import load_config
from callfs_site.metrics import UNDER_REPLICATED
from cluster.models import Node
from cluster.services import register_node
from filesystem import fsck, repair
from filesystem.models import CopyState, Inode, PendingDiscard, Replica
from filesystem.services import blobs
from filesystem.storage import get_backend
from tests.helpers import assert_error, body_of, stored_blobs, upload


@pytest.fixture
def replicated(settings, db):
    """CALLFS_REPLICAS=2 on a cluster of one live node (this one)."""
    settings.CALLFS = dataclasses.replace(settings.CALLFS, replicas=2,
                                          internal_secret="s" * 24)
    register_node(settings.CALLFS.node_id, "http://127.0.0.1:8000", heartbeat=True)
    return settings


@pytest.mark.parametrize(("value", "problem"), [
    ("0", "at least 1"), ("17", "at most 16"), ("two", "not an integer"),
    ("2", "CALLFS_INTERNAL_SECRET")])
def test_replicas_setting_is_checked(value, problem):
    with pytest.raises(ImproperlyConfigured, match=problem):
        load_config({"CALLFS_REPLICAS": value})
    config = load_config({"CALLFS_REPLICAS": "3", "CALLFS_INTERNAL_SECRET": "s" * 24,
                          "CALLFS_REPLICAS_STRICT": "1"})
    assert (config.replicas, config.replicas_strict, config.repair_interval) == (3, True, 60.0)


def test_with_too_few_nodes_a_write_stores_what_it_can_and_counts_as_under_replicated(
        replicated, auth_client):
    assert upload(auth_client, "/one.txt", b"only here").status_code == 201
    assert body_of(auth_client.get("/v1/files/one.txt")) == b"only here"
    assert repair.under_replicated() == 1
    summary = repair.run()
    assert (summary.checked, summary.copied, summary.lost, summary.under_replicated) == \
        (1, 0, [], 1)
    assert UNDER_REPLICATED._value.get() == 1


def test_strict_refuses_the_write_and_stores_nothing(replicated, auth_client, storage_root):
    replicated.CALLFS = dataclasses.replace(replicated.CALLFS, replicas_strict=True)
    assert_error(upload(auth_client, "/strict.txt", b"x" * 10), 503, "SERVICE_UNAVAILABLE")
    assert_error(upload(auth_client, "/strict.bin", b"x" * 200_000), 503, "SERVICE_UNAVAILABLE")
    assert not Inode.objects.filter(path__startswith="/strict").exists()
    assert stored_blobs(storage_root) == set()


def replica_here(client, path: str, data: bytes, primary: str) -> Inode:
    """A file whose primary copy is on `primary` and whose replica is on this node (its bytes
    uploaded here, then its metadata pointed there)."""
    upload(client, path, data)
    inode = Inode.objects.get(path=path)
    Inode.objects.filter(pk=inode.pk).update(node_id=primary)
    Replica.objects.create(inode=inode, node_id=settings.CALLFS.node_id,
                           blob_key=inode.blob_key, sha256=inode.sha256)
    return inode


def test_a_copy_here_serves_a_file_whose_primary_is_gone(replicated, auth_client):
    """Reads fall back to any good copy: here, a replica row on this node."""
    inode = replica_here(auth_client, "/kept.txt", b"still here", "gone-node")
    assert body_of(auth_client.get("/v1/files/kept.txt")) == b"still here"
    ranged = auth_client.get("/v1/files/kept.txt", HTTP_RANGE="bytes=6-9")
    assert (ranged.status_code, body_of(ranged)) == (206, b"here")
    # A stale row (another version's key) is no copy: the file is unreadable, not wrong.
    Replica.objects.filter(inode=inode).update(blob_key="0" * 32)
    assert_error(auth_client.get("/v1/files/kept.txt"), 502, "NODE_UNAVAILABLE")
    # repair makes the copy here the primary once the old primary's node is unregistered.
    Replica.objects.filter(inode=inode).update(blob_key=inode.blob_key)
    summary = repair.run()
    assert summary.promoted == 1
    assert Inode.objects.get(pk=inode.pk).node_id == replicated.CALLFS.node_id
    assert not Replica.objects.filter(inode=inode).exists()


def test_pending_discards_delete_only_what_nothing_references(replicated, auth_client):
    node = replicated.CALLFS.node_id
    local = get_backend("localfs")
    stale = local.new_key()
    local.write(stale, [b"old bytes"])
    upload(auth_client, "/live.txt", b"current")
    live_key = Inode.objects.get(path="/live.txt").blob_key
    PendingDiscard.objects.create(node_id=node, blob_key=stale)
    PendingDiscard.objects.create(node_id=node, blob_key=live_key)  # copied here again since
    assert repair.discard_pending() == 1
    assert not local._path(stale).exists()
    assert body_of(auth_client.get("/v1/files/live.txt")) == b"current"
    assert not PendingDiscard.objects.exists()


def test_fsck_checks_the_copies_this_node_holds_for_others(replicated, auth_client):
    inode = replica_here(auth_client, "/theirs.txt", b"a replica", "other-node")
    assert fsck.check(grace=0).clean
    get_backend("localfs")._path(inode.blob_key).write_bytes(b"a replicA")  # same size
    assert fsck.check(grace=0).clean  # sizes only
    assert fsck.check(grace=0, checksums=True).corrupt == ["/theirs.txt"]
    get_backend("localfs").delete(inode.blob_key)
    assert fsck.check(grace=0).missing == ["/theirs.txt"]
    Replica.objects.filter(inode=inode).update(state=CopyState.MISSING)


def test_repair_leaves_the_copy_of_a_node_that_does_not_answer_alone(replicated, auth_client):
    """A node heartbeating but not answering (a hung machine) is neither a good copy nor a
    missing one: nothing is recorded against it, and the file is short of copies."""
    register_node("hung", "http://127.0.0.1:9", heartbeat=True)  # the discard port: refused
    upload(auth_client, "/hung.txt", b"two copies, one away")
    inode = Inode.objects.get(path="/hung.txt")
    Replica.objects.create(inode=inode, node_id="hung", blob_key=inode.blob_key,
                           sha256=inode.sha256)
    summary = repair.run()
    assert (summary.missing, summary.lost, summary.copied) == (0, [], 0)
    assert Replica.objects.get(inode=inode).state == CopyState.OK


def test_a_draining_node_takes_no_new_copies(replicated, auth_client):
    for node in ("taker", "leaver"):
        register_node(node, f"http://127.0.0.1:9/{node}", heartbeat=True)
    with pytest.raises(CommandError, match="no node"):
        call_command("drain_node", "nobody")
    call_command("drain_node", "leaver", stdout=StringIO())  # holds nothing: done at once
    assert Node.objects.get(node_id="leaver").draining
    assert auth_client.get("/v1/nodes/leaver").json()["draining"] is True
    blobs._live = (0.0, [])
    assert set(blobs.live_nodes()) >= {"taker", "leaver"}  # still read from
    assert "leaver" not in blobs.live_nodes(for_new_copies=True)
    call_command("drain_node", "leaver", "--cancel", stdout=StringIO())
    blobs._live = (0.0, [])
    assert "leaver" in blobs.live_nodes(for_new_copies=True)


def test_repair_on_a_single_node_that_never_heartbeat(auth_client):
    """Without a cluster (one copy, no node registered) repair finds every file in place."""
    upload(auth_client, "/alone.txt", b"here")
    summary = repair.run()
    assert (summary.checked, summary.lost, summary.under_replicated) == (1, [], 0)

"""Node management commands and /v1/nodes/."""

from __future__ import annotations

import dataclasses
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from cluster.models import Node
from cluster.services import register_node
from tests.helpers import assert_error, upload


@pytest.mark.django_db
def test_register_list_and_remove_nodes():
    out = StringIO()
    call_command("register_node", "node-a", "http://10.0.0.1:8000/", stdout=out)
    assert "Registered node node-a" in out.getvalue()
    call_command("register_node", "node-a", "http://10.0.0.9:8000", stdout=out)
    assert Node.objects.get(node_id="node-a").url == "http://10.0.0.9:8000"
    with pytest.raises(CommandError):
        call_command("register_node", "node-b", "ftp://x")
    listing = StringIO()
    call_command("list_nodes", stdout=listing)
    assert "node-a" in listing.getvalue() and "down" in listing.getvalue()  # never heartbeat
    register_node("node-a", "http://10.0.0.9:8000", heartbeat=True)
    assert Node.objects.get(node_id="node-a").state == "up"
    call_command("remove_node", "node-a", stdout=out)
    assert not Node.objects.filter(node_id="node-a").exists()
    with pytest.raises(CommandError, match="no node"):
        call_command("remove_node", "node-a")


def test_remove_node_refuses_while_it_holds_files(auth_client, settings):
    register_node(settings.CALLFS.node_id, "http://127.0.0.1:8000", heartbeat=True)
    upload(auth_client, "/held.txt", b"x")
    with pytest.raises(CommandError, match="still holds the only copy of 1 file"):
        call_command("remove_node", settings.CALLFS.node_id)


def test_nodes_api_lists_nodes(auth_client, api_client):
    register_node("node-z", "http://127.0.0.1:9999", heartbeat=True)
    response = auth_client.get("/v1/nodes/")
    assert response.status_code == 200
    [node] = [n for n in response.json() if n["id"] == "node-z"]
    assert node["state"] == "up" and node["url"] == "http://127.0.0.1:9999"
    assert auth_client.get("/v1/nodes/node-z").json()["id"] == "node-z"
    assert api_client.get("/v1/nodes/").status_code == 401


def test_a_file_on_an_unregistered_node_is_502(auth_client, settings):
    from filesystem.models import Inode

    upload(auth_client, "/far.txt", b"x")
    Inode.objects.filter(path="/far.txt").update(node_id="ghost-node")
    settings.CALLFS = dataclasses.replace(settings.CALLFS, internal_secret="s" * 20)
    assert_error(auth_client.get("/v1/files/far.txt"), 502, "NODE_UNAVAILABLE")

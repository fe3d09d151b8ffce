"""Node URLs in the admin (issue 20, item 2): a node's id and URL decide where this node sends
bytes and signed requests, so only superusers add nodes or change them; other staff members, even
with `change_node`, see them read-only."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from cluster.models import Node

NODES = "/admin/cluster/node/"


@pytest.fixture
def node(db):
    return Node.objects.create(node_id="node-a", url="http://127.0.0.1:8101", version="0.1.0")


def logged_in(make_user, name: str, *codenames: str, superuser: bool = False) -> Client:
    member, _ = make_user(name, superuser=superuser)
    member.is_staff = True
    member.save()
    member.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(member)
    return client


def test_staff_see_a_nodes_url_read_only_and_only_superusers_change_it(make_user, node):
    client = logged_in(make_user, "clerk", "view_node", "change_node", "add_node")
    page = client.get(f"{NODES}{node.pk}/change/")
    assert page.status_code == 200
    content = page.content.decode()
    assert 'name="url"' not in content and 'name="node_id"' not in content
    assert "http://127.0.0.1:8101" in content  # shown, as text
    response = client.post(f"{NODES}{node.pk}/change/",
                           {"node_id": "node-b", "url": "http://127.0.0.1:8451",
                            "version": "0.1.0"})
    assert response.status_code in (200, 302, 403)
    node.refresh_from_db()
    assert (node.node_id, node.url) == ("node-a", "http://127.0.0.1:8101")

    boss = logged_in(make_user, "boss", superuser=True)
    assert 'name="url"' in boss.get(f"{NODES}{node.pk}/change/").content.decode()
    response = boss.post(f"{NODES}{node.pk}/change/",
                         {"node_id": "node-a", "url": "http://127.0.0.1:8102",
                          "registered_at_0": "2026-01-01", "registered_at_1": "00:00:00"})
    assert response.status_code == 302, response.content.decode()[:2000]
    node.refresh_from_db()
    assert node.url == "http://127.0.0.1:8102"


def test_staff_cannot_add_a_node(make_user, db):
    client = logged_in(make_user, "clerk", "view_node", "change_node", "add_node")
    assert client.get(f"{NODES}add/").status_code == 403
    response = client.post(f"{NODES}add/", {"node_id": "evil", "url": "http://127.0.0.1:8451",
                                            "registered_at_0": "2026-01-01",
                                            "registered_at_1": "00:00:00"})
    assert response.status_code == 403
    assert not Node.objects.filter(node_id="evil").exists()
    assert "Add node" not in client.get(NODES).content.decode()

"""The admin console: file browser, file actions through the services, links, nodes, API keys
and the dashboard, driven with Django's test client as a logged-in superuser."""

from __future__ import annotations

import dataclasses
import hashlib
import html
import json
import re
from datetime import timedelta
from urllib.parse import urlencode

import pytest
from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.contrib.auth.models import Group, Permission
from django.core.cache import cache
from django.test import Client
from django.utils import timezone

from accounts.models import ApiKey
from cluster import peers
from cluster.models import Node
from filesystem import services
from filesystem.models import Inode, Replica
from filesystem.services import blobs
from links import throttling
from links.models import DownloadLink
from tests.helpers import assert_error, body_of, upload

BROWSE = "/admin/filesystem/inode/browse/"


@pytest.fixture(autouse=True)
def no_rate_limits(settings):
    """Link generation and downloads are rate limited per IP; these tests fire them fast."""
    settings.CALLFS_LINK_GENERATE_RATE = None
    settings.CALLFS_LINK_DOWNLOAD_RATE = None
    keys = [throttling.cache_key(scope, "127.0.0.1") for scope in ("generate", "download")]
    cache.delete_many(keys)
    yield
    cache.delete_many(keys)


@pytest.fixture
def boss_and_key(make_user):
    return make_user("boss", superuser=True)


@pytest.fixture
def boss(boss_and_key):
    return boss_and_key[0]


@pytest.fixture
def api(boss_and_key, client_for):
    """The API as the superuser whose admin session the tests use."""
    return client_for(boss_and_key[1])


@pytest.fixture
def admin(boss):
    client = Client()
    client.force_login(boss)
    return client


def put(api, path: str, data: bytes = b"hello") -> None:
    response = upload(api, path, data, method="put")
    assert response.status_code in (200, 201), (path, response.status_code, response.content)


def mkdir(api, path: str) -> None:
    assert api.post(f"/v1/files/{path.strip('/')}/").status_code in (200, 201)


def url(view: str = "", path: str = "/", **params) -> str:
    base = BROWSE + (f"{view}/" if view else "")
    return f"{base}?{urlencode({'path': path, **params})}"


def page(client, address: str, status: int = 200) -> str:
    response = client.get(address)
    assert response.status_code == status, (address, response.status_code)
    return response.content.decode()


def text_of(content: str) -> str:
    """The visible text of a page, whitespace collapsed (for ordering checks)."""
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", content)))


def messages_in(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


def head(api, path: str) -> dict:
    response = api.head(f"/v1/files/{path.lstrip('/')}")
    assert response.status_code == 200, response.status_code
    return {k: response[k] for k in ("X-CallFS-Mode", "X-CallFS-Owner", "X-CallFS-Group")}


def staff(make_user, name: str, *codenames: str):
    """A logged-in staff member who is not a superuser, holding only these permissions."""
    member, _ = make_user(name)
    member.is_staff = True
    member.save()
    member.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(member)
    return member, client


# --- access -------------------------------------------------------------------------------------


@pytest.mark.parametrize("address", [BROWSE, BROWSE + "entry/?path=/", "/admin/",
                                     "/admin/accounts/apikey/add/"])
def test_non_staff_users_are_sent_to_the_login(address, make_user):
    alice, _ = make_user("alice")
    signed_in, anonymous = Client(), Client()
    signed_in.force_login(alice)
    for client in (signed_in, anonymous):
        response = client.get(address)
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/")


def test_changes_need_a_post(admin, api):
    put(api, "/a.txt")
    for view in ("chmod", "move", "mkdir"):
        assert admin.get(url(view, "/a.txt")).status_code == 405


# --- browsing -----------------------------------------------------------------------------------


def test_browse_from_the_root_to_a_file(admin, api):
    put(api, "/docs/reports/q1.txt", b"quarterly")
    root = page(admin, BROWSE)
    assert html.escape(url(path="/docs")) in root and "docs/" in root

    docs = page(admin, url(path="/docs"))
    assert html.escape(url(path="/docs/reports")) in docs
    assert html.escape(url(path="/")) in docs  # the parent link and the breadcrumb

    reports = page(admin, url(path="/docs/reports"))
    assert html.escape(url("entry", "/docs/reports/q1.txt")) in reports

    entry = page(admin, url("entry", "/docs/reports/q1.txt"))
    assert hashlib.sha256(b"quarterly").hexdigest() in entry
    assert "9 bytes" in entry and "-rw-r--r--" in entry
    assert html.escape(url("download", "/docs/reports/q1.txt")) in entry
    assert "boss" in entry and "localfs" in entry


def test_a_file_path_in_the_browser_opens_its_page(admin, api):
    put(api, "/a.txt")
    response = admin.get(url(path="/a.txt"))
    assert response.status_code == 302 and response["Location"] == url("entry", "/a.txt")


def test_breadcrumbs_link_every_directory_above(admin, api):
    mkdir(api, "/a/b/c")
    content = page(admin, url(path="/a/b/c"))
    crumbs = content.split('class="breadcrumbs"')[1].split("</div>")[0]
    for above in ("/", "/a", "/a/b"):
        assert f'href="{html.escape(url(path=above))}"' in crumbs
    assert 'class="callfs-crumb-current">c<' in crumbs


def test_listing_is_directories_first_with_human_sizes_and_ls_modes(admin, api):
    put(api, "/box/a-file.bin", b"x" * 1536)
    put(api, "/box/b-big.bin", b"y" * (3 * 1024 * 1024))
    mkdir(api, "/box/z-dir")
    assert api.patch("/v1/files/box/z-dir", data=json.dumps({"mode": "1777"}),
                     content_type="application/json").status_code == 200
    content = text_of(page(admin, url(path="/box")))
    assert content.index("z-dir/") < content.index("a-file.bin") < content.index("b-big.bin")
    assert "1.5 KB" in content and "3.0 MB" in content
    assert "drwxrwxrwt" in content and "-rw-r--r--" in content
    for column in ("owner", "group", "mode", "modified", "backend", "node"):
        assert column in content
    root = text_of(page(admin, BROWSE))
    assert "box/ directory — boss — drwxr-xr-x" in root


def test_large_directories_are_paginated(admin, boss):
    services.make_directory(boss, "/many")
    for number in range(60):
        services.create_file(boss, f"/many/f{number:02}.txt", [b"."])
    first = page(admin, url(path="/many"))
    assert first.count('class="callfs-name callfs-file"') == 50
    assert "f00.txt" in first and "f49.txt" in first and "f50.txt" not in first
    assert "60 entries" in first
    assert html.escape(url(path="/many", p=2)) in first
    second = page(admin, url(path="/many", p=2))
    assert second.count('class="callfs-name callfs-file"') == 10
    assert "f50.txt" in second and "f59.txt" in second and "f49.txt" not in second


def test_search_finds_names_below_the_current_directory(admin, api):
    put(api, "/proj/src/report-2024.txt")
    put(api, "/proj/REPORT.md")
    put(api, "/proj/notes.txt")
    put(api, "/elsewhere/report.txt")
    content = page(admin, url(path="/proj", q="report"))
    assert "src/report-2024.txt" in content and "REPORT.md" in content
    assert "notes.txt" not in content and "elsewhere" not in content
    assert "2 results" in content
    assert "Nothing below /proj matches" in page(admin, url(path="/proj", q="zzz"))
    everywhere = page(admin, url(path="/", q="report"))
    assert "elsewhere/report.txt" in everywhere and "proj/src/report-2024.txt" in everywhere


def test_a_missing_path_is_a_message_not_an_error(admin):
    response = admin.get(url(path="/no/such/dir"), follow=True)
    assert response.status_code == 200
    assert any("FILE_NOT_FOUND" in m for m in messages_in(response))
    response = admin.get(url("entry", "/x/../../etc"), follow=True)
    assert response.status_code == 200


def test_the_inode_list_links_to_the_browser(admin, api):
    put(api, "/a.txt")
    content = page(admin, "/admin/filesystem/inode/")
    assert f'href="{BROWSE}"' in content and "Browse files" in content
    assert html.escape(url("entry", "/a.txt")) in content
    assert "-rw-r--r--" in content


# --- download -----------------------------------------------------------------------------------


def test_download_streams_the_exact_bytes(admin, api):
    data = bytes(range(256)) * 4096 + b"tail"
    put(api, "/bin/blob v1.bin", data)
    response = admin.get(url("download", "/bin/blob v1.bin"))
    assert response.status_code == 200 and response.streaming
    assert body_of(response) == data
    assert response["Content-Length"] == str(len(data))
    assert response["Content-Disposition"] == 'attachment; filename="blob v1.bin"'


def test_download_of_missing_bytes_is_a_message(admin, api, storage_root):
    put(api, "/gone.txt")
    for blob in storage_root.rglob("*"):
        if blob.is_file() and blob.read_bytes() == b"hello":
            blob.unlink()
    response = admin.get(url("download", "/gone.txt"), follow=True)
    assert response.status_code == 200
    assert any("missing" in m for m in messages_in(response))


# --- changes through the services ---------------------------------------------------------------


def logged(action_flag: int) -> list[LogEntry]:
    return list(LogEntry.objects.filter(action_flag=action_flag).order_by("pk"))


def test_chmod_chown_chgrp_as_the_api_would(admin, api, boss, make_user):
    make_user("bob")
    Group.objects.create(name="staff")
    put(api, "/team/plan.txt")
    response = admin.post(url("chmod"), {"path": "/team/plan.txt", "mode": "0640",
                                         "owner": "bob", "group": "staff"}, follow=True)
    assert response.status_code == 200
    assert head(api, "/team/plan.txt") == {"X-CallFS-Mode": "0640", "X-CallFS-Owner": "bob",
                                           "X-CallFS-Group": "staff"}
    entry = logged(CHANGE)[-1]
    assert entry.user == boss and entry.object_repr == "/team/plan.txt"
    assert "mode 0644 → 0640" in entry.change_message and "owner boss → bob" in \
        entry.change_message and "group" in entry.change_message
    assert "-rw-r-----" in response.content.decode()

    # Only what changed is sent: the same form again changes nothing and logs nothing.
    admin.post(url("chmod"), {"path": "/team/plan.txt", "mode": "640", "owner": "bob",
                              "group": "staff"})
    assert len(logged(CHANGE)) == 1


def test_chmod_form_errors_and_service_errors(admin, api):
    put(api, "/a.txt")
    response = admin.post(url("chmod"), {"path": "/a.txt", "mode": "0999", "owner": "boss"})
    assert response.status_code == 200 and "must be an octal string" in response.content.decode()
    response = admin.post(url("chmod"), {"path": "/a.txt", "mode": "0644", "owner": "nobody"},
                          follow=True)
    assert response.status_code == 200
    assert any("no user named 'nobody'" in m for m in messages_in(response))
    assert Inode.objects.get(path="/a.txt").owner.username == "boss"
    assert not logged(CHANGE)


def test_rename_then_move_as_the_api_would(admin, api, boss):
    put(api, "/docs/report.txt", b"contents")
    inode_id = Inode.objects.get(path="/docs/report.txt").pk
    response = admin.post(url("move"), {"path": "/docs/report.txt", "destination": "final.txt"})
    assert response.status_code == 302 and response["Location"] == url("entry",
                                                                        "/docs/final.txt")
    assert api.get("/v1/files/docs/report.txt").status_code == 404
    assert body_of(api.get("/v1/files/docs/final.txt")) == b"contents"

    response = admin.post(url("move"), {"path": "/docs/final.txt",
                                        "destination": "/archive/2024/final.txt",
                                        "create_parents": "on"}, follow=True)
    assert response.status_code == 200
    assert body_of(api.get("/v1/files/archive/2024/final.txt")) == b"contents"
    assert Inode.objects.get(path="/archive/2024/final.txt").pk == inode_id  # metadata-only
    messages = [e.change_message for e in logged(CHANGE)]
    assert messages == ["Renamed /docs/report.txt to /docs/final.txt",
                        "Moved /docs/final.txt to /archive/2024/final.txt"]
    assert {e.user for e in logged(CHANGE)} == {boss}


def test_moving_onto_an_existing_path_is_a_message(admin, api):
    put(api, "/a.txt", b"a")
    put(api, "/b.txt", b"b")
    response = admin.post(url("move"), {"path": "/a.txt", "destination": "/b.txt"},
                          follow=True)
    assert response.status_code == 200
    assert any("already exists" in m and "FILE_ALREADY_EXISTS" in m
               for m in messages_in(response))
    assert body_of(api.get("/v1/files/b.txt")) == b"b" and not logged(CHANGE)

    response = admin.post(url("move"), {"path": "/a.txt", "destination": "/b.txt",
                                        "overwrite": "on"}, follow=True)
    assert response.status_code == 200
    assert body_of(api.get("/v1/files/b.txt")) == b"a"
    assert api.get("/v1/files/a.txt").status_code == 404


def test_moving_a_directory_into_itself_or_an_invalid_name(admin, api):
    mkdir(api, "/d/e")
    response = admin.post(url("move"), {"path": "/d", "destination": "/d/e/f"}, follow=True)
    assert any("BAD_REQUEST" in m for m in messages_in(response))
    response = admin.post(url("move"), {"path": "/d", "destination": ".."})
    assert response.status_code == 200 and "not a valid name" in response.content.decode()
    assert Inode.objects.filter(path="/d/e").exists()


def test_delete_a_file_through_the_confirmation(admin, api, boss):
    put(api, "/old/report.txt")
    confirm = page(admin, url("delete", "/old/report.txt"))
    assert "Yes, delete it" in confirm and "/old/report.txt" in confirm
    assert api.get("/v1/files/old/report.txt").status_code == 200  # GET changes nothing
    response = admin.post(url("delete"), {"path": "/old/report.txt"})
    assert response.status_code == 302 and response["Location"] == url(path="/old")
    assert_error(api.get("/v1/files/old/report.txt"), 404, "FILE_NOT_FOUND")
    entry = logged(DELETION)[-1]
    assert entry.user == boss and entry.object_repr == "/old/report.txt"
    assert entry.change_message == "Deleted /old/report.txt"


def test_delete_a_directory_needs_recursive_when_not_empty(admin, api):
    put(api, "/tree/a/b.txt")
    response = admin.post(url("delete"), {"path": "/tree"}, follow=True)
    assert any("DIRECTORY_NOT_EMPTY" in m for m in messages_in(response))
    assert api.get("/v1/files/tree/a/b.txt").status_code == 200
    assert "Delete everything below it too" in page(admin, url("delete", "/tree"))
    admin.post(url("delete"), {"path": "/tree", "recursive": "on"})
    assert_error(api.get("/v1/files/tree"), 404, "FILE_NOT_FOUND")
    assert logged(DELETION)[-1].change_message == "Deleted /tree and everything below it"


def test_the_root_cannot_be_deleted(admin):
    response = admin.post(url("delete"), {"path": "/", "recursive": "on"}, follow=True)
    assert response.status_code == 200
    assert any("root directory cannot be deleted" in m for m in messages_in(response))
    assert Inode.objects.filter(path="/").exists()


def test_make_a_directory(admin, api, boss):
    mkdir(api, "/projects")
    response = admin.post(url("mkdir"), {"path": "/projects", "name": "new one"})
    assert response.status_code == 302
    assert api.head("/v1/files/projects/new one")["X-CallFS-Type"] == "directory"
    assert logged(ADDITION)[-1].object_repr == "/projects/new one"
    response = admin.post(url("mkdir"), {"path": "/projects", "name": "a/b"}, follow=True)
    assert any("not a valid name" in m for m in messages_in(response))


def test_staff_who_are_not_superusers_get_posix_permissions(api, make_user):
    """The browser acts as request.user: a staff member is checked like any API user."""
    from django.contrib.auth.models import Permission

    clerk, _ = make_user("clerk")
    clerk.is_staff = True
    clerk.save()
    clerk.user_permissions.add(*Permission.objects.filter(codename__in=["view_inode",
                                                                         "change_inode"]))
    mkdir(api, "/private")
    assert api.patch("/v1/files/private", data=json.dumps({"mode": "0700"}),
                     content_type="application/json").status_code == 200
    client = Client()
    client.force_login(clerk)
    response = client.get(url(path="/private"), follow=True)
    assert any("PERMISSION_DENIED" in m for m in messages_in(response))
    response = client.post(url("delete"), {"path": "/private"}, follow=True)
    assert any("PERMISSION_DENIED" in m for m in messages_in(response))
    assert Inode.objects.filter(path="/private").exists()


def test_search_shows_only_what_browsing_would_list(admin, boss, make_user):
    """Issue 20: a result is shown only if browsing its directory would list it (`x` on every
    directory above it, `r` on its own), so search finds nothing behind a closed directory."""
    _, clerk = staff(make_user, "clerk", "view_inode")
    for directory, mode in [("/alice", 0o700), ("/alice/sub", 0o755), ("/shared", 0o755),
                            ("/dropbox", 0o711), ("/dropbox/open", 0o755),
                            ("/listonly", 0o744), ("/listonly/sub", 0o755)]:
        services.make_directory(boss, directory)
        services.change_metadata(boss, directory, mode=mode)
    for name in ["/alice/private-plans.txt", "/alice/sub/deep-plans.txt", "/shared/plans.txt",
                 "/dropbox/hidden-plans.txt", "/dropbox/open/open-plans.txt",
                 "/listonly/listed-plans.txt", "/listonly/sub/unreachable-plans.txt"]:
        services.create_file(boss, name, [b"secret"])
    assert any("PERMISSION_DENIED" in m for m in messages_in(
        clerk.get(url(path="/alice"), follow=True)))

    shown = ["shared/plans.txt", "dropbox/open/open-plans.txt", "listonly/listed-plans.txt"]
    content = page(clerk, url(path="/", q="plans"))
    assert all(name in content for name in shown)
    for hidden in ("private-plans", "deep-plans", "hidden-plans", "unreachable-plans"):
        assert hidden not in content
    assert "3 results" in content
    content = page(clerk, url(path="/listonly", q="plans"))  # readable, not traversable
    assert "listed-plans.txt" in content and "unreachable-plans" not in content
    assert "1 result" in content
    assert "7 results" in page(admin, url(path="/", q="plans"))  # superusers bypass the checks


def test_an_entry_shows_its_digest_only_to_those_who_may_read_it(admin, boss, make_user):
    """Issue 20: as in the API, a file's sha256 gives a short secret away."""
    _, clerk = staff(make_user, "clerk", "view_inode")
    services.create_file(boss, "/pin.txt", [b"pin=4321"])
    services.create_file(boss, "/notice.txt", [b"open"])
    services.change_metadata(boss, "/pin.txt", mode=0o600)
    secret = hashlib.sha256(b"pin=4321").hexdigest()
    assert secret not in page(clerk, url("entry", "/pin.txt"))
    assert hashlib.sha256(b"open").hexdigest() in page(clerk, url("entry", "/notice.txt"))
    assert secret in page(admin, url("entry", "/pin.txt"))


# --- links --------------------------------------------------------------------------------------


def new_link(api, path: str, expiry: int = 3600) -> str:
    response = api.post("/v1/links/generate", data=json.dumps(
        {"path": path, "expiry_seconds": expiry}), content_type="application/json")
    assert response.status_code == 201, response.content
    return json.loads(response.content)["token"]


def link_of(token: str) -> DownloadLink:
    return DownloadLink.objects.get(public_id=token.split(".")[0])


def test_links_list_hides_tokens_and_bulk_revoke_makes_them_410(admin, api, boss):
    put(api, "/share/a.txt", b"aaa")
    tokens = [new_link(api, "/share/a.txt") for _ in range(3)]
    content = page(admin, "/admin/links/downloadlink/")
    for token in tokens:
        link = link_of(token)
        assert link.public_id in content
        assert token not in content and token.split(".")[1] not in content
        assert link.digest not in content
    assert 'class="callfs-badge callfs-link-active"' in content

    revoke = [link_of(t).pk for t in tokens[:2]]
    response = admin.post("/admin/links/downloadlink/",
                          {"action": "revoke", "_selected_action": revoke}, follow=True)
    assert response.status_code == 200
    assert any("2 link(s) revoked" in m for m in messages_in(response))
    for token in tokens[:2]:
        assert_error(Client().get(f"/download/{token}"), 410, "LINK_EXPIRED")
    assert body_of(Client().get(f"/download/{tokens[2]}")) == b"aaa"
    assert [e.change_message for e in logged(CHANGE)] == ["Revoked the link to /share/a.txt"] * 2


def test_links_filters_by_state_creator_and_expiry(admin, api, make_user, client_for):
    put(api, "/share/a.txt")
    assert api.patch("/v1/files/share/a.txt", data=json.dumps({"mode": "0644"}),
                     content_type="application/json").status_code == 200
    _, alice_key = make_user("alice")
    alice = client_for(alice_key)
    active, used, revoked, expired = (new_link(api, "/share/a.txt") for _ in range(4))
    by_alice = new_link(alice, "/share/a.txt")
    Client().get(f"/download/{used}")
    api.delete(f"/v1/links/{revoked.split('.')[0]}")
    DownloadLink.objects.filter(pk=link_of(expired).pk).update(
        expires_at=timezone.now() - timedelta(hours=1))

    def shown(query: str) -> set[str]:
        content = page(admin, f"/admin/links/downloadlink/?{query}")
        tokens = {"active": active, "used": used, "revoked": revoked, "expired": expired,
                  "by_alice": by_alice}
        return {name for name, token in tokens.items() if token.split(".")[0] in content}

    assert shown("state=active") == {"active", "by_alice"}
    assert shown("state=used") == {"used"}
    assert shown("state=revoked") == {"revoked"}
    assert shown("state=expired") == {"expired"}
    alice_id = link_of(by_alice).created_by_id
    assert shown(f"created_by__id__exact={alice_id}") == {"by_alice"}
    since = (timezone.now() + timedelta(minutes=5)).isoformat()
    assert shown(urlencode({"expires_at__gte": since})) == {"active", "used", "revoked", "by_alice"}


def test_active_links_are_counted_per_file(admin, api):
    put(api, "/share/a.txt")
    put(api, "/share/b.txt")
    tokens = [new_link(api, "/share/a.txt") for _ in range(3)]
    api.delete(f"/v1/links/{tokens[0].split('.')[0]}")
    listing = text_of(page(admin, url(path="/share")))
    assert re.search(r"a\.txt file .*? 2 b\.txt file .*? 0", listing), listing
    entry = page(admin, url("entry", "/share/a.txt"))
    assert 'id="callfs-active-links">2<' in entry and "active of 3" in entry
    assert tokens[1].split(".")[0] in entry and tokens[1].split(".")[1] not in entry
    inode_id = Inode.objects.get(path="/share/a.txt").pk
    put(api, "/share/c.txt")
    other = new_link(api, "/share/c.txt")
    links = page(admin, f"/admin/links/downloadlink/?inode={inode_id}")
    assert all(t.split(".")[0] in links for t in tokens)
    assert other.split(".")[0] not in links


# --- nodes --------------------------------------------------------------------------------------


def test_nodes_show_state_and_files_and_bytes_per_node(admin, api, settings):
    now = timezone.now()
    Node.objects.create(node_id="node-up", url="http://127.0.0.1:8101", last_heartbeat=now)
    Node.objects.create(node_id="node-down", url="http://127.0.0.1:8102",
                        last_heartbeat=now - timedelta(minutes=5))
    put(api, "/n/a.bin", b"a" * 1000)
    put(api, "/n/b.bin", b"b" * 2048)
    put(api, "/n/c.bin", b"c" * 10)
    Inode.objects.filter(path__in=["/n/a.bin", "/n/b.bin"]).update(node_id="node-up")
    Inode.objects.filter(path="/n/c.bin").update(node_id="node-down")
    content = page(admin, "/admin/cluster/node/")
    up_row = content.split("node-up</a>")[1].split("</tr>")[0]
    down_row = content.split("node-down</a>")[1].split("</tr>")[0]
    assert 'class="callfs-badge callfs-node-up">up<' in up_row
    assert 'class="callfs-badge callfs-node-down">down<' in down_row
    assert "http://127.0.0.1:8101" in up_row
    assert '<td class="field-files">2</td>' in up_row and 'title="3048 bytes"' in up_row
    assert '<td class="field-files">1</td>' in down_row and 'title="10 bytes"' in down_row


# --- API keys -----------------------------------------------------------------------------------


def test_create_a_key_shows_it_once_and_it_works(admin, api_client, boss):
    form = page(admin, "/admin/accounts/apikey/add/")
    assert "username" in form and "superuser" in form
    response = admin.post("/admin/accounts/apikey/add/", {
        "username": "carol", "name": "laptop", "groups": "ops, staff"})
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    key = re.search(r'id="callfs-new-key">([^<]+)<', response.content.decode())[1]
    api_key = ApiKey.objects.get(user__username="carol")
    assert key.startswith(api_key.prefix) and api_key.name == "laptop"
    assert sorted(api_key.user.groups.values_list("name", flat=True)) == ["ops", "staff"]
    assert not api_key.user.is_superuser

    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert api_client.get("/v1/files/").status_code == 200

    for address in ("/admin/accounts/apikey/", f"/admin/accounts/apikey/{api_key.pk}/change/"):
        content = page(admin, address)
        assert key not in content and key[api_key.PREFIX_LENGTH:] not in content
        assert api_key.digest not in content and api_key.prefix in content
    entry = logged(ADDITION)[-1]
    assert entry.user == boss and key not in entry.change_message
    assert entry.change_message == f"Created API key {api_key.prefix}… for carol"


def test_create_a_superuser_key_and_refuse_reserved_names(admin):
    response = admin.post("/admin/accounts/apikey/add/", {"username": "ops",
                                                          "superuser": "on"})
    assert response.status_code == 200
    assert ApiKey.objects.get(user__username="ops").user.is_superuser
    response = admin.post("/admin/accounts/apikey/add/", {"username": "root"})
    assert response.status_code == 200
    assert any("reserved" in m for m in messages_in(response))
    assert not ApiKey.objects.filter(user__username="root").exists()
    response = admin.post("/admin/accounts/apikey/add/", {"username": ""})
    assert "This field is required" in response.content.decode()


def test_revoke_keys_and_see_last_use(admin, make_user, client_for):
    _, key = make_user("dave")
    client_for(key).get("/v1/files/")
    api_key = ApiKey.objects.get(user__username="dave")
    assert api_key.last_used_at is not None
    listing = page(admin, "/admin/accounts/apikey/")
    assert "Last used" in listing or "last used" in listing.lower()
    response = admin.post("/admin/accounts/apikey/", {"action": "revoke",
                                                      "_selected_action": [api_key.pk]})
    assert response.status_code == 302
    api_key.refresh_from_db()
    assert api_key.revoked_at is not None
    assert_error(client_for(key).get("/v1/files/"), 401, "AUTHENTICATION_FAILED")
    assert logged(CHANGE)[-1].change_message == "Revoked"


KEYS = "/admin/accounts/apikey/"


def test_staff_who_are_not_superusers_create_plain_keys_for_themselves_only(make_user,
                                                                             api_client):
    """Issue 20: with only `add_apikey`, a staff member may create a key for themselves with no
    flags; another user, the superuser flag and groups are for superusers."""
    member, clerk = staff(make_user, "clerk", "add_apikey")
    make_user("alice")
    form = page(clerk, KEYS + "add/")
    assert 'name="superuser"' not in form and 'name="groups"' not in form
    assert 'name="username" value="clerk"' in form

    for username in ("alice", "mallory"):  # impersonation, or a new user of one's own making
        response = clerk.post(KEYS + "add/", {"username": username, "name": "x"})
        assert response.status_code == 200
        assert "only superusers may create keys for other users" in response.content.decode()
        assert not ApiKey.objects.filter(user__username=username, name="x").exists()
    assert not type(member).objects.filter(username="mallory").exists()

    response = clerk.post(KEYS + "add/", {"username": "clerk", "superuser": "on",
                                          "groups": "admins"})
    key = re.search(r'id="callfs-new-key">([^<]+)<', response.content.decode())[1]
    member.refresh_from_db()
    assert not member.is_superuser and not member.groups.exists()
    assert not Group.objects.filter(name="admins").exists()
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert api_client.get("/v1/files/").status_code == 200
    assert ApiKey.objects.matching(key).get().user == member


def test_keys_keep_their_user_and_revoking_needs_the_change_permission(make_user, client_for):
    _, key = make_user("alice")
    api_key = ApiKey.objects.get(user__username="alice")
    _, viewer = staff(make_user, "viewer", "view_apikey")
    assert 'value="revoke"' not in page(viewer, KEYS)
    viewer.post(KEYS, {"action": "revoke", "_selected_action": [api_key.pk]})
    api_key.refresh_from_db()
    assert api_key.revoked_at is None
    assert client_for(key).get("/v1/files/").status_code == 200

    editor, client = staff(make_user, "editor", "view_apikey", "change_apikey")
    response = client.post(f"{KEYS}{api_key.pk}/change/", {"user": editor.pk, "name": "mine"})
    assert response.status_code == 302
    api_key.refresh_from_db()
    assert api_key.user.username == "alice" and api_key.name == "mine"


def test_old_addresses_of_the_key_admin_lead_to_its_new_place(admin, make_user):
    """Issue 22 moved API keys from the filesystem app to accounts; bookmarks keep working."""
    make_user("alice")
    api_key = ApiKey.objects.get(user__username="alice")
    moved = {"/admin/filesystem/apikey/": KEYS,
             "/admin/filesystem/apikey/add/": KEYS + "add/",
             f"/admin/filesystem/apikey/{api_key.pk}/change/": f"{KEYS}{api_key.pk}/change/",
             "/admin/filesystem/apikey/?revoked_at__isnull=True": KEYS + "?revoked_at__isnull=True"}
    for old, new in moved.items():
        response = admin.get(old)
        assert response.status_code == 301 and response["Location"] == new
        assert admin.get(new).status_code == 200


# --- dashboard ----------------------------------------------------------------------------------


def test_dashboard_shows_the_totals_and_keeps_the_app_list(admin, api):
    now = timezone.now()
    Node.objects.create(node_id="n1", url="http://127.0.0.1:8101", last_heartbeat=now)
    Node.objects.create(node_id="n2", url="http://127.0.0.1:8102", last_heartbeat=now)
    Node.objects.create(node_id="n3", url="http://127.0.0.1:8103", last_heartbeat=None)
    put(api, "/d/a.txt", b"a" * 1024)
    put(api, "/d/e/b.txt", b"b" * 2048)
    Inode.objects.filter(path="/d/a.txt").update(node_id="n1")
    new_link(api, "/d/a.txt")
    content = page(admin, "/admin/")
    assert 'id="callfs-total-files">2<' in content
    assert 'id="callfs-total-directories">3<' in content  # /, /d, /d/e
    assert 'id="callfs-total-bytes" title="3072 bytes">3.0' in content
    assert 'id="callfs-active-links">1<' in content
    assert ">2 up<" in content and ">1 down<" in content
    by_backend = content.split("Per backend")[1].split("</table>")[0]
    assert "localfs" in by_backend and "3.0" in by_backend
    by_node = text_of(content.split("Per node")[1].split("</table>")[0])
    assert "n1 up 1 1.0 KB" in by_node and "n3 down 0" in by_node
    assert f'href="{BROWSE}?path=%2F"' in content and "Browse files" in content
    assert "/admin/filesystem/inode/" in content and "/admin/links/downloadlink/" in content
    assert "/admin/cluster/node/" in content  # the normal app list is still there
    assert "/admin/accounts/apikey/" in content


def test_with_replicas_a_file_page_shows_its_copies_and_the_dashboard_the_shortfall(
        admin, api, settings):
    settings.CALLFS = dataclasses.replace(settings.CALLFS, replicas=2, internal_secret="s" * 24)
    now = timezone.now()
    for node in ("n1", "n2"):
        Node.objects.create(node_id=node, url=f"http://127.0.0.1:81{node[1]}", last_heartbeat=now)
    put(api, "/r/two.txt", b"two copies")
    put(api, "/r/one.txt", b"one copy")
    two, one = Inode.objects.get(path="/r/two.txt"), Inode.objects.get(path="/r/one.txt")
    Inode.objects.filter(pk__in=[two.pk, one.pk]).update(node_id="n1")
    Replica.objects.create(inode=two, node_id="n2", blob_key=two.blob_key, sha256=two.sha256)
    Replica.objects.create(inode=one, node_id="n2", blob_key="0" * 32, sha256=one.sha256)
    blobs._live = (0.0, [])  # as the nodes are now, not when the uploads looked
    peers._failed_at.clear()  # the uploads tried to copy to n1 and n2, which do not answer
    content = page(admin, "/admin/")
    assert 'id="callfs-under-replicated"><span class="callfs-badge callfs-node-down">1<' in content
    entry = text_of(page(admin, url("entry", "/r/two.txt")))
    assert "n1 (primary copy)" in entry and "replicas n2 ok verified" in entry
    assert "n2 stale" in text_of(page(admin, url("entry", "/r/one.txt")))


def test_pages_have_no_inline_styles_or_scripts(admin, api):
    """The CSP (style-src 'self'; script-src 'self') would block them."""
    put(api, "/docs/a.txt")
    new_link(api, "/docs/a.txt")
    for address in (BROWSE, url(path="/docs"), url("entry", "/docs/a.txt"),
                    url("delete", "/docs/a.txt"), "/admin/", "/admin/accounts/apikey/add/"):
        content = page(admin, address)
        assert "<style" not in content and ' style="' not in content
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", content), address

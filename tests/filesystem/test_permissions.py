"""The Unix permission model over HTTP (API.md §16.2, with §3.1 and §7.7).

alice and bob are in group "team"; alice is also in "staff"; carol is in no group; sue is a
superuser; `internal` authenticates with the internal secret (user `internal-proxy`).
alice owns /shared (group team, mode 2770), /private (0700) and the top-level file /top.txt.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError

from filesystem.models import Inode, InodeType
from tests.helpers import assert_error, body_of, upload

INTERNAL_SECRET = "x" * 20
FILE_INFO_KEYS = {"name", "path", "type", "size", "mode", "owner", "group", "mtime"}


def url(path: str) -> str:
    return f"/v1/files/{path.lstrip('/')}"


def make(client, path: str, data: bytes = b"x") -> None:
    """Create a file (or, with a trailing slash, a directory), insisting on 201."""
    response = upload(client, path, data)
    assert response.status_code == 201, (path, response.status_code, response.content[:200])


def patch(client, path: str, body):
    return client.patch(url(path), data=json.dumps(body), content_type="application/json")


def chmod(client, path: str, mode: str) -> dict:
    response = patch(client, path, {"mode": mode})
    assert response.status_code == 200, (path, response.status_code, response.content[:200])
    return json.loads(response.content)


def head(client, path: str):
    response = client.head(url(path))
    assert response.status_code == 200, (path, response.status_code)
    return response


def read(client, path: str) -> bytes:
    response = client.get(url(path))
    assert response.status_code == 200, (path, response.status_code, response.content[:200])
    return body_of(response)


def listing(client, path: str, **query) -> list[dict]:
    response = client.get(f"/v1/directories/{path.lstrip('/')}", query)
    assert response.status_code == 200, (path, response.status_code, response.content[:200])
    return json.loads(response.content)["items"]


def names(client, path: str) -> list[str]:
    return sorted(item["name"] for item in listing(client, path))


def exists(client, path: str) -> bool:
    """As seen by `client` (an admin in the callers below)."""
    status = client.head(url(path)).status_code
    assert status in (200, 404), status
    return status == 200


def denied(response) -> None:
    if response.request["REQUEST_METHOD"] == "HEAD":
        assert response.status_code == 403, response.status_code
    else:
        assert_error(response, 403, "PERMISSION_DENIED")


def copy(client, source: str, destination: str, method: str = "put"):
    return upload(client, destination, b"", method=method, HTTP_X_CALLFS_COPY_SOURCE=source)


# --- fixtures -----------------------------------------------------------------------------------

@pytest.fixture
def alice(make_user, client_for):
    return client_for(make_user("alice", groups=["team", "staff"])[1])


@pytest.fixture
def bob(make_user, client_for):
    return client_for(make_user("bob", groups=["team"])[1])


@pytest.fixture
def carol(make_user, client_for):
    return client_for(make_user("carol")[1])


@pytest.fixture
def sue(make_user, client_for):
    return client_for(make_user("sue", superuser=True)[1])


@pytest.fixture
def internal(settings, db, client_for):
    settings.CALLFS = dataclasses.replace(settings.CALLFS, internal_secret=INTERNAL_SECRET)
    return client_for(INTERNAL_SECRET)


@pytest.fixture
def outsiders(db):
    """A group that exists but that alice is not in."""
    return Group.objects.create(name="outsiders")


@pytest.fixture
def tree(alice, bob, carol, sue):
    """The "done means" layout of the issue."""
    make(alice, "/shared/")
    info = json.loads(patch(alice, "/shared", {"group": "team", "mode": "2770"}).content)
    assert (info["group"], info["mode"]) == ("team", "2770")
    make(alice, "/shared/alice.txt", b"alice in shared")
    make(alice, "/private/")
    assert chmod(alice, "/private", "0700")["mode"] == "0700"
    make(alice, "/private/secret.txt", b"secret")
    make(alice, "/top.txt", b"top")


# --- 2. the scenario -------------------------------------------------------------------------

def test_shared_and_private_metadata(tree, alice):
    shared = head(alice, "/shared")
    assert (shared["X-CallFS-Owner"], shared["X-CallFS-Group"], shared["X-CallFS-Mode"]) == \
        ("alice", "team", "2770")
    private = head(alice, "/private")
    assert (private["X-CallFS-Owner"], private["X-CallFS-Group"], private["X-CallFS-Mode"]) == \
        ("alice", "", "0700")


def test_bob_reads_and_writes_in_shared(tree, bob, alice):
    # create
    make(bob, "/shared/bob.txt", b"v1")
    make(bob, "/shared/bobdir/")
    make(bob, "/shared/bobdir/inner.txt", b"inner")
    created = head(bob, "/shared/bob.txt")
    assert (created["X-CallFS-Owner"], created["X-CallFS-Group"]) == ("bob", "team")
    # overwrite his own file
    assert upload(bob, "/shared/bob.txt", b"v2", method="put").status_code == 200
    assert read(alice, "/shared/bob.txt") == b"v2"
    # list (both endpoints) and read alice's file (0644, group r)
    assert names(bob, "/shared") == ["alice.txt", "bob.txt", "bobdir"]
    assert sorted(i["name"] for i in json.loads(bob.get(url("/shared")).content)) == \
        ["alice.txt", "bob.txt", "bobdir"]
    assert read(bob, "/shared/alice.txt") == b"alice in shared"
    # alice's file is 0644: the group may read it, not overwrite it
    denied(upload(bob, "/shared/alice.txt", b"bob was here", method="put"))
    assert read(alice, "/shared/alice.txt") == b"alice in shared"
    # delete his own entries
    assert bob.delete(url("/shared/bob.txt")).status_code == 204
    assert bob.delete(url("/shared/bobdir") + "?recursive=true").status_code == 204
    assert names(alice, "/shared") == ["alice.txt"]


def test_group_can_overwrite_a_0660_file(tree, alice, bob):
    chmod(alice, "/shared/alice.txt", "0660")
    assert upload(bob, "/shared/alice.txt", b"edited by bob", method="put").status_code == 200
    assert read(alice, "/shared/alice.txt") == b"edited by bob"
    assert head(alice, "/shared/alice.txt")["X-CallFS-Owner"] == "alice"


PRIVATE_REQUESTS = [
    ("list", lambda c: c.get("/v1/directories/private")),
    ("list-recursive", lambda c: c.get("/v1/directories/private", {"recursive": "true"})),
    ("get-dir", lambda c: c.get(url("/private"))),
    ("read", lambda c: c.get(url("/private/secret.txt"))),
    ("head", lambda c: c.head(url("/private/secret.txt"))),
    ("create-post", lambda c: upload(c, "/private/new.txt", b"n")),
    ("create-put", lambda c: upload(c, "/private/new.txt", b"n", method="put")),
    ("mkdir", lambda c: upload(c, "/private/sub/")),
    ("overwrite", lambda c: upload(c, "/private/secret.txt", b"n", method="put")),
    ("delete", lambda c: c.delete(url("/private/secret.txt"))),
    ("rename", lambda c: patch(c, "/private/secret.txt", {"name": "mine.txt"})),
    ("move-out", lambda c: patch(c, "/private/secret.txt", {"destination": "/mine.txt"})),
]


@pytest.mark.parametrize("request_", [r[1] for r in PRIVATE_REQUESTS],
                         ids=[r[0] for r in PRIVATE_REQUESTS])
def test_bob_is_locked_out_of_private(tree, bob, alice, request_):
    denied(request_(bob))
    assert names(alice, "/private") == ["secret.txt"]
    assert read(alice, "/private/secret.txt") == b"secret"


CAROL_REQUESTS = [
    ("list", lambda c, d: c.get(f"/v1/directories/{d}")),
    ("get-dir", lambda c, d: c.get(url(d))),
    ("read", lambda c, d: c.get(url(f"{d}/{'secret' if d == 'private' else 'alice'}.txt"))),
    ("create", lambda c, d: upload(c, f"/{d}/carol.txt", b"c")),
    ("mkdir", lambda c, d: upload(c, f"/{d}/carol/")),
]


@pytest.mark.parametrize("directory", ["shared", "private"])
@pytest.mark.parametrize("request_", [r[1] for r in CAROL_REQUESTS],
                         ids=[r[0] for r in CAROL_REQUESTS])
def test_carol_is_locked_out_of_both(tree, carol, sue, directory, request_):
    denied(request_(carol, directory))
    assert not exists(sue, f"/{directory}/carol.txt")
    assert not exists(sue, f"/{directory}/carol")


def test_chmod_0755_opens_private_for_reading_only(tree, alice, bob, carol):
    assert chmod(alice, "/private", "0755")["mode"] == "0755"
    assert names(bob, "/private") == ["secret.txt"]
    assert read(bob, "/private/secret.txt") == b"secret"
    assert read(carol, "/private/secret.txt") == b"secret"
    denied(upload(bob, "/private/new.txt", b"n"))
    denied(upload(bob, "/private/sub/"))
    denied(upload(bob, "/private/secret.txt", b"n", method="put"))
    denied(bob.delete(url("/private/secret.txt")))
    assert names(alice, "/private") == ["secret.txt"]


# --- the sticky root -----------------------------------------------------------------------

STICKY_ATTEMPTS = [
    ("delete-dir", lambda c: c.delete(url("/shared"))),
    ("delete-dir-recursive", lambda c: c.delete(url("/shared") + "?recursive=true")),
    ("delete-file", lambda c: c.delete(url("/top.txt"))),
    ("rename-dir", lambda c: patch(c, "/shared", {"name": "bobs"})),
    ("rename-file", lambda c: patch(c, "/top.txt", {"name": "bobs.txt"})),
    ("move-file", lambda c: patch(c, "/top.txt", {"destination": "/shared/top.txt"})),
]


@pytest.mark.parametrize("who", ["bob", "carol"])
@pytest.mark.parametrize("attempt", [a[1] for a in STICKY_ATTEMPTS],
                         ids=[a[0] for a in STICKY_ATTEMPTS])
def test_only_the_owner_removes_from_the_sticky_root(tree, request, alice, who, attempt):
    denied(attempt(request.getfixturevalue(who)))
    assert read(alice, "/top.txt") == b"top"
    assert names(alice, "/shared") == ["alice.txt"]
    assert {"shared", "private", "top.txt"} <= set(names(alice, "/"))


def test_everyone_creates_and_removes_their_own_top_level_entries(tree, bob, carol):
    make(bob, "/bob.txt", b"b")
    make(carol, "/carol/")
    denied(bob.delete(url("/carol")))
    denied(carol.delete(url("/bob.txt")))
    assert patch(bob, "/bob.txt", {"name": "bob2.txt"}).status_code == 200
    assert bob.delete(url("/bob2.txt")).status_code == 204
    assert carol.delete(url("/carol")).status_code == 204


@pytest.mark.parametrize("admin", ["sue", "internal"])
def test_admins_remove_and_rename_anything_under_the_sticky_root(tree, request, alice, admin):
    client = request.getfixturevalue(admin)
    assert client.delete(url("/top.txt")).status_code == 204
    response = patch(client, "/shared", {"name": "renamed"})
    assert response.status_code == 200, response.content
    assert json.loads(response.content)["path"] == "/renamed"
    assert client.delete(url("/private") + "?recursive=true").status_code == 204
    assert names(alice, "/") == ["renamed"]
    assert head(alice, "/renamed")["X-CallFS-Owner"] == "alice"


def test_sticky_subdirectory(alice, bob, carol):
    make(alice, "/drop/")
    chmod(alice, "/drop", "1777")
    make(bob, "/drop/bob.txt", b"b")
    make(carol, "/drop/carol.txt", b"c")
    denied(carol.delete(url("/drop/bob.txt")))
    denied(patch(carol, "/drop/bob.txt", {"name": "stolen.txt"}))
    denied(bob.delete(url("/drop/carol.txt")))
    assert alice.delete(url("/drop/bob.txt")).status_code == 204  # the directory's owner
    assert carol.delete(url("/drop/carol.txt")).status_code == 204  # the entry's owner
    assert names(alice, "/drop") == []


def test_moving_a_directory_to_a_new_parent_needs_w_on_it(alice, bob):
    make(alice, "/pub/")
    chmod(alice, "/pub", "0777")
    make(bob, "/pub/bdir/")
    make(bob, "/pub/dest/")
    chmod(bob, "/pub/bdir", "0555")
    denied(patch(bob, "/pub/bdir", {"destination": "/pub/dest/bdir"}))
    # A rename within the same parent does not touch `..`: allowed.
    assert patch(bob, "/pub/bdir", {"name": "bdir2"}).status_code == 200
    chmod(bob, "/pub/bdir2", "0755")
    assert patch(bob, "/pub/bdir2", {"destination": "/pub/dest/bdir"}).status_code == 200
    assert head(bob, "/pub/dest/bdir")["X-CallFS-Mode"] == "0755"


# --- 3. 403 versus 404 for missing targets ---------------------------------------------------

MISSING_REQUESTS = [
    ("get", lambda c, p: c.get(url(p))),
    ("head", lambda c, p: c.head(url(p))),
    ("list", lambda c, p: c.get(f"/v1/directories/{p.lstrip('/')}")),
    ("delete", lambda c, p: c.delete(url(p))),
    ("rename", lambda c, p: patch(c, p, {"name": "other.txt"})),
    ("chmod", lambda c, p: patch(c, p, {"mode": "0600"})),
    ("copy-from", lambda c, p: copy(c, p, "/copied.txt")),
]


@pytest.mark.parametrize("path", ["/private/missing.txt", "/private/missing/deeper.txt"])
@pytest.mark.parametrize("request_", [r[1] for r in MISSING_REQUESTS],
                         ids=[r[0] for r in MISSING_REQUESTS])
def test_missing_below_an_untraversable_directory_is_403(tree, bob, request_, path):
    denied(request_(bob, path))


@pytest.mark.parametrize("path", ["/shared/missing.txt", "/shared/missing/deeper.txt"])
@pytest.mark.parametrize("request_", [r[1] for r in MISSING_REQUESTS],
                         ids=[r[0] for r in MISSING_REQUESTS])
def test_missing_in_a_traversable_directory_is_404(tree, bob, request_, path):
    response = request_(bob, path)
    if response.request["REQUEST_METHOD"] == "HEAD":
        assert response.status_code == 404
    else:
        assert_error(response, 404, "FILE_NOT_FOUND")


def test_carol_cannot_probe_shared(tree, carol):
    # /shared is 2770: carol ("other") has no x on it.
    denied(carol.get(url("/shared/missing.txt")))
    denied(carol.get(url("/shared/alice.txt")))


def test_execute_only_directory(alice, bob):
    make(alice, "/dropbox/")
    make(alice, "/dropbox/known.txt", b"known")
    chmod(alice, "/dropbox", "0711")
    assert read(bob, "/dropbox/known.txt") == b"known"  # x lets bob reach a name he knows
    assert_error(bob.get(url("/dropbox/guess.txt")), 404, "FILE_NOT_FOUND")
    denied(bob.get("/v1/directories/dropbox"))  # but r is needed to list
    denied(bob.get(url("/dropbox")))


def test_a_directory_without_x_still_shows_itself(tree, bob):
    # stat of /private itself needs x on / only (like `ls -ld`).
    response = head(bob, "/private")
    assert (response["X-CallFS-Mode"], response["X-CallFS-Owner"]) == ("0700", "alice")


# --- 4. recursive listing --------------------------------------------------------------------

@pytest.fixture
def listing_tree(alice):
    make(alice, "/tree/")
    make(alice, "/tree/a.txt")
    make(alice, "/tree/pub/")
    make(alice, "/tree/pub/p.txt")
    for name, mode in [("secret", "0700"), ("blind", "0711"), ("noexec", "0744")]:
        make(alice, f"/tree/{name}/")
        make(alice, f"/tree/{name}/s.txt")
        make(alice, f"/tree/{name}/deeper/d.txt")
        chmod(alice, f"/tree/{name}", mode)


def test_recursive_listing_stops_at_unreadable_directories(listing_tree, alice, bob):
    seen = [item["path"] for item in listing(bob, "/tree", recursive="true")]
    assert sorted(seen) == ["/tree/a.txt", "/tree/blind", "/tree/noexec", "/tree/pub",
                            "/tree/pub/p.txt", "/tree/secret"]
    everything = {item["path"] for item in listing(alice, "/tree", recursive="true")}
    assert {"/tree/secret/s.txt", "/tree/secret/deeper", "/tree/secret/deeper/d.txt"} \
        <= everything


def test_recursive_listing_reports_the_closed_directory(listing_tree, bob):
    secret = next(item for item in listing(bob, "/tree", recursive="true")
                  if item["path"] == "/tree/secret")
    assert (secret["type"], secret["mode"], secret["owner"]) == ("directory", "0700", "alice")


@pytest.mark.parametrize("recursive", ["false", "true"])
def test_listing_a_0700_directory_is_403(listing_tree, bob, recursive):
    denied(bob.get("/v1/directories/tree/secret", {"recursive": recursive}))


def test_recursive_listing_from_the_root(listing_tree, bob):
    seen = {item["path"] for item in listing(bob, "/", recursive="true")}
    assert "/tree/secret" in seen
    assert not any(path.startswith("/tree/secret/") for path in seen)


def test_recursive_listing_of_a_readable_but_untraversable_directory(listing_tree, bob):
    # /tree/noexec is 0744: bob ("other", r--) may list its names (r), but reaching anything
    # below it needs x on it (§16.2), so its subdirectory's contents must stay hidden ...
    denied(bob.get("/v1/directories/tree/noexec/deeper"))
    # ... also through a recursive listing started at it.
    seen = {item["path"] for item in listing(bob, "/tree/noexec", recursive="true")}
    assert {"/tree/noexec/s.txt", "/tree/noexec/deeper"} <= seen
    assert "/tree/noexec/deeper/d.txt" not in seen


# --- 5. recursive delete is all or nothing ---------------------------------------------------

def _proj_paths(client) -> set[str]:
    return {item["path"] for item in listing(client, "/proj", recursive="true")}


def test_recursive_delete_with_a_read_only_subdirectory(alice, sue):
    make(alice, "/proj/a.txt")
    make(alice, "/proj/b/c.txt")
    make(alice, "/proj/locked/l.txt")
    chmod(alice, "/proj/locked", "0555")  # alice cannot remove l.txt from it
    before = _proj_paths(sue)
    denied(alice.delete(url("/proj") + "?recursive=true"))
    assert _proj_paths(sue) == before
    assert read(alice, "/proj/a.txt") == b"x"
    assert sue.delete(url("/proj") + "?recursive=true").status_code == 204
    assert not exists(sue, "/proj")


def test_recursive_delete_with_an_unlistable_subdirectory(alice, sue):
    make(alice, "/proj/a.txt")
    make(alice, "/proj/wx/l.txt")
    chmod(alice, "/proj/wx", "0300")  # w+x but no r: rm -r cannot list it
    before = _proj_paths(sue)
    denied(alice.delete(url("/proj") + "?recursive=true"))
    assert _proj_paths(sue) == before


def test_recursive_delete_with_someone_elses_file_in_a_sticky_subdirectory(alice, bob, carol,
                                                                           sue):
    make(alice, "/proj/a.txt")
    chmod(alice, "/proj", "0777")
    make(carol, "/proj/drop/")
    chmod(carol, "/proj/drop", "1777")
    make(bob, "/proj/drop/bob.txt", b"b")
    before = _proj_paths(sue)
    # alice owns /proj but neither /proj/drop nor bob's file in it
    denied(alice.delete(url("/proj") + "?recursive=true"))
    assert _proj_paths(sue) == before
    assert read(bob, "/proj/drop/bob.txt") == b"b"
    # carol, the sticky directory's owner, may empty it
    assert carol.delete(url("/proj/drop") + "?recursive=true").status_code == 204
    assert alice.delete(url("/proj") + "?recursive=true").status_code == 204


def test_recursive_delete_by_another_user_in_a_group_directory(tree, alice, bob):
    make(bob, "/shared/bdir/x.txt")
    make(alice, "/shared/bdir2/")
    make(alice, "/shared/bdir2/y.txt")
    # bob may remove /shared/bdir2 from /shared (2770, group), but not y.txt from bdir2 (0755)
    denied(bob.delete(url("/shared/bdir2") + "?recursive=true"))
    assert read(alice, "/shared/bdir2/y.txt") == b"x"
    assert bob.delete(url("/shared/bdir") + "?recursive=true").status_code == 204


# --- 6. PATCH metadata -------------------------------------------------------------------------

@pytest.fixture
def afile(alice):
    make(alice, "/a.txt", b"alice")
    return "/a.txt"


def test_chmod_by_the_owner(afile, alice):
    response = patch(alice, afile, {"mode": "0640"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")
    info = json.loads(response.content)
    assert set(info) == FILE_INFO_KEYS
    assert (info["path"], info["mode"], info["owner"], info["type"]) == \
        ("/a.txt", "0640", "alice", "file")
    assert head(alice, afile)["X-CallFS-Mode"] == "0640"


@pytest.mark.parametrize("who", ["bob", "carol"])
def test_chmod_by_a_non_owner_is_403(afile, request, alice, who):
    chmod(alice, afile, "0666")
    denied(patch(request.getfixturevalue(who), afile, {"mode": "0777"}))
    assert head(alice, afile)["X-CallFS-Mode"] == "0666"


@pytest.mark.parametrize("admin", ["sue", "internal"])
def test_chmod_by_an_admin(afile, request, alice, admin):
    assert chmod(request.getfixturevalue(admin), afile, "0600")["mode"] == "0600"
    assert head(alice, afile)["X-CallFS-Owner"] == "alice"


@pytest.mark.parametrize("mode", ["999", "abc", 644, "17777", "", "0o644", "-644", "08",
                                  None, True, ["0644"]])
def test_invalid_modes_are_400(afile, alice, mode):
    assert_error(patch(alice, afile, {"mode": mode}), 400, "INVALID_REQUEST")
    assert head(alice, afile)["X-CallFS-Mode"] == "0644"


@pytest.mark.parametrize("client", ["alice", "sue"])
@pytest.mark.parametrize("mode", ["4755", "2755", "6755", "04644", "2644", "7777", "3644"])
def test_setuid_and_setgid_on_a_file_are_400(afile, request, alice, client, mode):
    # Nothing honours them (no file is ever executed): refused for superusers too.
    body = assert_error(patch(request.getfixturevalue(client), afile, {"mode": mode}), 400,
                        "INVALID_REQUEST")
    assert body["message"].startswith("mode: ")
    assert head(alice, afile)["X-CallFS-Mode"] == "0644"


@pytest.mark.parametrize("mode", ["4755", "6770", "7777"])
def test_setuid_on_a_directory_is_400(alice, mode):
    make(alice, "/d/")
    assert_error(patch(alice, "/d", {"mode": mode}), 400, "INVALID_REQUEST")
    assert head(alice, "/d")["X-CallFS-Mode"] == "0755"


def test_setgid_on_a_directory_is_kept_and_changes_nothing(alice, bob):
    # BSD semantics: every directory passes its group on, with or without the bit.
    make(alice, "/plain/")
    make(alice, "/sgid/")
    for directory, mode in [("/plain", "0770"), ("/sgid", "2770")]:
        info = json.loads(patch(alice, directory, {"group": "team", "mode": mode}).content)
        assert (info["mode"], info["group"]) == (mode, "team")
        make(bob, f"{directory}/sub/")
        make(bob, f"{directory}/f.txt")
        assert head(bob, f"{directory}/sub")["X-CallFS-Group"] == "team"
        assert head(bob, f"{directory}/f.txt")["X-CallFS-Group"] == "team"
        assert head(bob, f"{directory}/sub")["X-CallFS-Mode"] == "0755"  # the bit is not passed on
    assert chmod(alice, "/sgid", "3777")["mode"] == "3777"  # with the sticky bit too


@pytest.mark.parametrize(("kind", "mode", "refused"), [
    (InodeType.FILE, 0o644, False), (InodeType.FILE, 0o1644, False),
    (InodeType.FILE, 0o2644, True), (InodeType.FILE, 0o4644, True),
    (InodeType.DIRECTORY, 0o2775, False), (InodeType.DIRECTORY, 0o3777, False),
    (InodeType.DIRECTORY, 0o4755, True), (InodeType.DIRECTORY, 0o10000, True),
], ids=lambda value: f"{value:04o}" if type(value) is int else None)
def test_the_model_holds_the_mode_invariant(kind, mode, refused):
    assert (Inode.mode_problem(kind, mode) is not None) is refused
    inode = Inode(type=kind, mode=mode)
    if refused:
        with pytest.raises(ValidationError) as error:
            inode.clean()
        assert set(error.value.message_dict) == {"mode"}
    else:
        inode.clean()


def test_chgrp_to_an_own_group(afile, alice):
    info = json.loads(patch(alice, afile, {"group": "staff"}).content)
    assert info["group"] == "staff"
    assert head(alice, afile)["X-CallFS-Group"] == "staff"
    assert alice.get(url(afile))["X-CallFS-Group"] == "staff"
    entry = next(i for i in listing(alice, "/") if i["path"] == afile)
    assert entry["group"] == "staff"
    entry = next(i for i in json.loads(alice.get(url("/")).content) if i["path"] == afile)
    assert entry["group"] == "staff"


def test_chgrp_to_a_group_she_is_not_in_is_403(afile, alice, outsiders):
    denied(patch(alice, afile, {"group": "outsiders"}))
    assert head(alice, afile)["X-CallFS-Group"] == ""


def test_chgrp_to_an_unknown_group_is_400(afile, alice):
    assert_error(patch(alice, afile, {"group": "no-such-group"}), 400, "INVALID_REQUEST")


def test_chgrp_by_a_group_member_who_is_not_the_owner_is_403(tree, alice, bob):
    denied(patch(bob, "/shared/alice.txt", {"group": "team"}))
    denied(patch(bob, "/shared", {"mode": "0777"}))  # rwx through the group is not ownership


def test_chgrp_by_a_superuser_to_any_group(afile, sue, alice, outsiders):
    assert json.loads(patch(sue, afile, {"group": "outsiders"}).content)["group"] == "outsiders"
    assert head(alice, afile)["X-CallFS-Group"] == "outsiders"


def test_chown(afile, alice, bob, sue):
    denied(patch(alice, afile, {"owner": "bob"}))
    denied(patch(bob, afile, {"owner": "bob"}))
    assert head(alice, afile)["X-CallFS-Owner"] == "alice"
    info = json.loads(patch(sue, afile, {"owner": "bob"}).content)
    assert info["owner"] == "bob"
    assert head(alice, afile)["X-CallFS-Owner"] == "bob"
    # bob is now the owner: he may chmod, alice may not.
    assert chmod(bob, afile, "0600")["mode"] == "0600"
    denied(patch(alice, afile, {"mode": "0644"}))
    denied(alice.get(url(afile)))


def test_chown_to_an_unknown_user_is_400(afile, sue):
    assert_error(patch(sue, afile, {"owner": "nobody-here"}), 400, "INVALID_REQUEST")


def test_metadata_changes_combine(afile, alice, sue):
    info = json.loads(patch(alice, afile, {"mode": "0600", "group": "team"}).content)
    assert (info["mode"], info["group"]) == ("0600", "team")
    info = json.loads(patch(sue, afile, {"mode": "0640", "group": "staff",
                                         "owner": "sue"}).content)
    assert (info["mode"], info["group"], info["owner"]) == ("0640", "staff", "sue")


@pytest.mark.parametrize("body", [
    {"mode": "0640", "name": "b.txt"},
    {"mode": "0640", "destination": "/b.txt"},
    {"group": "staff", "name": "b.txt"},
    {"owner": "alice", "destination": "/b.txt"},
])
def test_metadata_with_name_or_destination_is_400(afile, alice, body):
    assert_error(patch(alice, afile, body), 400, "INVALID_REQUEST")
    info = head(alice, afile)
    assert (info["X-CallFS-Mode"], info["X-CallFS-Group"]) == ("0644", "")
    assert not exists(alice, "/b.txt")


def test_chmod_a_directory_and_the_root(alice, sue):
    make(alice, "/d/")
    assert chmod(alice, "/d", "0750")["type"] == "directory"
    denied(patch(alice, "/", {"mode": "0777"}))
    assert head(alice, "/")["X-CallFS-Mode"] == "1777"


# --- 7. defaults and group inheritance ------------------------------------------------------

def test_upstream_defaults(alice):
    make(alice, "/f.txt")
    make(alice, "/d/")
    make(alice, "/implicit/parent/f.txt")
    assert head(alice, "/f.txt")["X-CallFS-Mode"] == "0644"
    for directory in ("/d", "/implicit", "/implicit/parent"):
        assert head(alice, directory)["X-CallFS-Mode"] == "0755"
        assert head(alice, directory)["X-CallFS-Owner"] == "alice"
    modes = {i["name"]: i["mode"] for i in listing(alice, "/")}
    assert modes == {"f.txt": "0644", "d": "0755", "implicit": "0755"}
    groups = {i["name"]: i["group"] for i in listing(alice, "/")}
    assert groups == {"f.txt": "", "d": "", "implicit": ""}  # the root has no group
    root = head(alice, "/")
    assert (root["X-CallFS-Mode"], root["X-CallFS-Owner"]) == ("1777", "root")


def test_umask_setting(settings, alice):
    settings.CALLFS = dataclasses.replace(settings.CALLFS, umask=0o027)
    make(alice, "/f.txt")
    make(alice, "/d/")
    assert head(alice, "/f.txt")["X-CallFS-Mode"] == "0640"
    assert head(alice, "/d")["X-CallFS-Mode"] == "0750"


def test_new_entries_take_the_parents_group(tree, alice, bob):
    make(bob, "/shared/b.txt")
    make(alice, "/shared/sub/")
    make(bob, "/shared/x/y/z.txt")  # implicit parents too
    upload(bob, "/shared/put.txt", b"p", method="put")
    for path in ("/shared/b.txt", "/shared/sub", "/shared/x", "/shared/x/y", "/shared/x/y/z.txt",
                 "/shared/put.txt"):
        assert head(alice, path)["X-CallFS-Group"] == "team", path
    items = listing(alice, "/shared", recursive="true")
    assert {i["group"] for i in items} == {"team"}
    # A later chgrp of the parent affects only entries created afterwards.
    patch(alice, "/shared", {"group": "staff"})
    make(alice, "/shared/later.txt")
    assert head(alice, "/shared/later.txt")["X-CallFS-Group"] == "staff"
    assert head(alice, "/shared/b.txt")["X-CallFS-Group"] == "team"


def test_a_copy_takes_the_destination_parents_group(tree, alice):
    make(alice, "/outside.txt")
    assert copy(alice, "/outside.txt", "/shared/copy.txt").status_code == 201
    assert head(alice, "/shared/copy.txt")["X-CallFS-Group"] == "team"


# --- 8. server-side copy needs read on the source ------------------------------------------

@pytest.mark.parametrize("method", ["put", "post"])
def test_copy_out_of_private_is_403(tree, bob, sue, method):
    denied(copy(bob, "/private/secret.txt", "/stolen.txt", method))
    assert not exists(sue, "/stolen.txt")


def test_copy_needs_r_on_the_source_file(tree, alice, bob, sue):
    chmod(alice, "/private", "0755")
    chmod(alice, "/private/secret.txt", "0600")
    denied(copy(bob, "/private/secret.txt", "/stolen.txt"))
    assert not exists(sue, "/stolen.txt")
    chmod(alice, "/private/secret.txt", "0644")
    assert copy(bob, "/private/secret.txt", "/mine.txt").status_code == 201
    assert read(bob, "/mine.txt") == b"secret"
    assert head(bob, "/mine.txt")["X-CallFS-Owner"] == "bob"


def test_copy_needs_create_rights_at_the_destination(tree, alice, bob, sue):
    make(bob, "/bob.txt", b"b")
    chmod(alice, "/private", "0755")
    denied(copy(bob, "/bob.txt", "/private/bob.txt"))
    denied(copy(bob, "/bob.txt", "/top.txt"))  # overwrite of alice's 0644 file
    assert read(sue, "/top.txt") == b"top"
    assert not exists(sue, "/private/bob.txt")


@pytest.mark.django_db
def test_the_migration_drops_special_bits_stored_before_they_were_refused():
    import importlib

    from django.apps import apps

    from filesystem.models import Inode

    migration = importlib.import_module("filesystem.migrations.0004_drop_special_mode_bits")
    root = Inode.objects.get(path="/")
    stored = {"/f-suid": ("file", 0o4755), "/f-sgid": ("file", 0o2755),
              "/d-suid": ("directory", 0o4775), "/d-sgid": ("directory", 0o2770),
              "/f-plain": ("file", 0o1644)}
    for path, (kind, mode) in stored.items():
        Inode(path=path, name=path[1:], parent=root, type=kind, mode=mode,
              owner=root.owner).save()
    migration.drop_special_bits(apps, None)
    modes = dict(Inode.objects.filter(path__in=stored).values_list("path", "mode"))
    assert modes == {"/f-suid": 0o755, "/f-sgid": 0o755, "/d-suid": 0o775, "/d-sgid": 0o2770,
                     "/f-plain": 0o1644}

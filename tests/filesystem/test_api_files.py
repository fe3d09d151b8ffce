"""/v1/files/{path}: GET, HEAD, POST, PUT, PATCH, DELETE (API.md §7.3-§7.8, §16.1)."""

import json
import re
from datetime import UTC, datetime

import pytest
from django.conf import settings

from filesystem import paths
from filesystem.models import Inode
from tests.helpers import assert_error, body_of, upload

MTIME = re.compile(r"\A20\d\d-\d\d-\d\dT\d\d:\d\d:\d\dZ\Z")
FILE_INFO_KEYS = ["name", "path", "type", "size", "mode", "owner", "group", "mtime"]
OLD_MTIME = datetime(2021, 2, 3, 4, 5, 6, tzinfo=UTC)


def make(client, path: str, data: bytes = b"x") -> None:
    """Create a file (or, with a trailing slash, a directory) and insist on 201."""
    response = upload(client, path, data)
    assert response.status_code == 201, (path, response.status_code, response.content[:200])


def content(client, path: str) -> bytes:
    response = client.get(f"/v1/files/{path.lstrip('/')}")
    assert response.status_code == 200, (path, response.status_code)
    return body_of(response)


def exists(client, path: str) -> bool:
    status = client.head(f"/v1/files/{path.lstrip('/')}").status_code
    assert status in (200, 404), status
    return status == 200


def patch(client, path: str, body, **extra):
    return client.patch(f"/v1/files/{path.lstrip('/')}", data=json.dumps(body),
                        content_type="application/json", **extra)


def backdate(path: str) -> None:
    Inode.objects.filter(path=path).update(mtime=OLD_MTIME)


# --- POST: create ----------------------------------------------------------------------------


def test_post_file_is_201_with_an_empty_body(auth_client):
    response = upload(auth_client, "/new.txt", b"hello")
    assert response.status_code == 201
    assert body_of(response) == b""
    assert content(auth_client, "/new.txt") == b"hello"


def test_post_creates_missing_parents_as_directories(auth_client):
    make(auth_client, "/a/b/c/deep.txt", b"deep")
    for directory in ("/a", "/a/b", "/a/b/c"):
        response = auth_client.head(f"/v1/files{directory}")
        assert response.status_code == 200, directory
        assert response["X-CallFS-Type"] == "directory"
        assert response["X-CallFS-Mode"] == "0755"
        assert response["X-CallFS-Owner"] == "alice"
        assert response["X-CallFS-Size"] == "0"
    assert content(auth_client, "/a/b/c/deep.txt") == b"deep"


def test_post_directory_is_201_then_200_idempotent(auth_client):
    first = upload(auth_client, "/newdir/", b"ignored body")
    assert first.status_code == 201
    assert body_of(first) == b""
    again = upload(auth_client, "/newdir/")
    assert again.status_code == 200
    assert body_of(again) == b""
    head = auth_client.head("/v1/files/newdir")
    assert head["X-CallFS-Type"] == "directory"
    assert head["X-CallFS-Size"] == "0"
    assert json.loads(auth_client.get("/v1/files/newdir/").content) == []


def test_post_nested_directory_creates_parents(auth_client):
    make(auth_client, "/p/q/r/")
    assert auth_client.head("/v1/files/p/q")["X-CallFS-Type"] == "directory"
    assert auth_client.head("/v1/files/p/q/r")["X-CallFS-Type"] == "directory"


def test_post_root_directory_is_200(auth_client):
    response = upload(auth_client, "/")
    assert response.status_code == 200
    assert body_of(response) == b""


@pytest.mark.parametrize(
    ("setup", "request_path", "body"),
    [
        ("/f.txt", "/f.txt", b"replacement"),  # file on file
        ("/f.txt", "/f.txt/", b""),  # directory on file
        ("/d/", "/d", b"file on dir"),  # file on directory
    ],
    ids=["file-on-file", "dir-on-file", "file-on-dir"],
)
def test_post_conflicts_are_409_and_change_nothing(auth_client, setup, request_path, body):
    make(auth_client, setup, b"original")
    assert_error(upload(auth_client, request_path, body), 409, "FILE_ALREADY_EXISTS")
    head = auth_client.head(f"/v1/files{setup}")
    if setup.endswith("/"):
        assert head["X-CallFS-Type"] == "directory"
        assert json.loads(auth_client.get(f"/v1/files{setup}").content) == []
    else:
        assert head["X-CallFS-Type"] == "file"
        assert content(auth_client, setup) == b"original"


def test_post_below_a_file_is_400_not_a_directory(auth_client):
    make(auth_client, "/plain.txt", b"data")
    assert_error(upload(auth_client, "/plain.txt/child.txt", b"x"), 400, "NOT_A_DIRECTORY")
    assert_error(upload(auth_client, "/plain.txt/sub/"), 400, "NOT_A_DIRECTORY")
    assert content(auth_client, "/plain.txt") == b"data"


def test_recreate_after_delete(auth_client):
    make(auth_client, "/again.txt", b"first")
    assert auth_client.delete("/v1/files/again.txt").status_code == 204
    make(auth_client, "/again.txt", b"second")
    assert content(auth_client, "/again.txt") == b"second"


# --- zero-byte and binary content ------------------------------------------------------------


@pytest.mark.parametrize("method", ["post", "put"])
def test_zero_byte_file(auth_client, method):
    response = upload(auth_client, "/empty.bin", b"", method=method)
    assert response.status_code == 201
    got = auth_client.get("/v1/files/empty.bin")
    assert got.status_code == 200
    assert body_of(got) == b""
    assert got["X-CallFS-Size"] == "0"
    assert got["Content-Length"] == "0"
    assert got["X-CallFS-Type"] == "file"


@pytest.mark.parametrize(
    "data",
    [bytes(range(256)) * 8, b"\x00" * 4096, b"\xff" * 4096, b"\r\n\r\n\x00\x1a", b"\xef\xbb\xbf"],
    ids=["all-bytes", "zeros", "0xff", "crlf-nul-ctrlz", "bom"],
)
def test_content_is_binary_safe(auth_client, data):
    make(auth_client, "/bin/blob.dat", data)
    response = auth_client.get("/v1/files/bin/blob.dat")
    assert body_of(response) == data
    assert response["X-CallFS-Size"] == str(len(data))
    assert response["Content-Length"] == str(len(data))
    assert upload(auth_client, "/bin/blob.dat", data[::-1], method="put").status_code == 200
    assert content(auth_client, "/bin/blob.dat") == data[::-1]


# --- GET / HEAD headers ----------------------------------------------------------------------


def assert_stat_headers(response, *, kind: str, size: str, mode: str, content_type: str):
    """The metadata headers of API.md §5.1 on a 200 for an entry alice created."""
    assert response.status_code == 200
    assert response["Content-Type"] == content_type
    assert response["X-CallFS-Type"] == kind
    assert response["X-CallFS-Size"] == size
    assert response["X-CallFS-Mode"] == mode
    assert response["X-CallFS-Owner"] == "alice"
    assert MTIME.match(response["X-CallFS-MTime"])
    assert response["X-CallFS-Instance-ID"] == settings.CALLFS.node_id


def test_get_file_headers(auth_client):
    make(auth_client, "/docs/h.txt", b"hello")
    response = auth_client.get("/v1/files/docs/h.txt")
    # Upstream sends X-CallFS-Instance-ID on HEAD only; issue 7 asks for it on file GETs too.
    assert_stat_headers(response, kind="file", size="5", mode="0644",
                        content_type="application/octet-stream")
    assert response["Content-Length"] == "5"


def test_head_file_headers_include_instance_id(auth_client):
    make(auth_client, "/docs/h.txt", b"hello")
    response = auth_client.head("/v1/files/docs/h.txt")
    assert_stat_headers(response, kind="file", size="5", mode="0644",
                        content_type="application/octet-stream")
    assert body_of(response) == b""


@pytest.mark.parametrize("suffix", ["", "/"])
def test_head_directory_with_or_without_slash(auth_client, suffix):
    make(auth_client, "/hd/")
    response = auth_client.head(f"/v1/files/hd{suffix}")
    assert_stat_headers(response, kind="directory", size="0", mode="0755",
                        content_type="application/json")
    assert body_of(response) == b""


@pytest.mark.parametrize("method", ["get", "head"])
def test_missing_file_is_404(auth_client, method):
    response = getattr(auth_client, method)("/v1/files/no/such/file.txt")
    if method == "get":
        assert_error(response, 404, "FILE_NOT_FOUND")
    else:
        assert response.status_code == 404


def test_mtime_is_the_stored_time_in_utc_seconds(auth_client):
    make(auth_client, "/t.txt")
    backdate("/t.txt")
    assert auth_client.head("/v1/files/t.txt")["X-CallFS-MTime"] == "2021-02-03T04:05:06Z"


# --- GET directory listing ------------------------------------------------------------------


def test_get_directory_is_a_bare_array_of_file_info(auth_client):
    make(auth_client, "/dir-test/inner.txt", b"inner")
    response = auth_client.get("/v1/files/dir-test")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["X-CallFS-Type"] == "directory"
    assert response["X-CallFS-Size"] == "0"
    assert response["X-CallFS-Mode"] == "0755"
    assert response["X-CallFS-Owner"] == "alice"
    assert not response.has_header("X-CallFS-Instance-ID")
    body = json.loads(response.content)
    assert isinstance(body, list) and len(body) == 1
    item = dict(body[0])
    assert list(item) == FILE_INFO_KEYS
    assert MTIME.match(item.pop("mtime"))
    assert isinstance(item.pop("group"), str)
    assert item == {"name": "inner.txt", "path": "/dir-test/inner.txt", "type": "file",
                    "size": 5, "mode": "0644", "owner": "alice"}
    # Compact JSON (§2.5).
    assert response.content == json.dumps(body, separators=(",", ":"),
                                          ensure_ascii=False).encode()


def test_directory_listing_order_and_shape(auth_client):
    for path in ("/ls/zeta.txt", "/ls/alpha.txt", "/ls/mid/", "/ls/beta/", "/ls/beta/deep.txt"):
        make(auth_client, path, b"12")
    body = json.loads(auth_client.get("/v1/files/ls/").content)
    assert [(i["name"], i["type"]) for i in body] == [
        ("alpha.txt", "file"), ("zeta.txt", "file"), ("beta", "directory"), ("mid", "directory")]
    assert [i["path"] for i in body] == ["/ls/alpha.txt", "/ls/zeta.txt", "/ls/beta", "/ls/mid"]
    assert [i["size"] for i in body] == [2, 2, 0, 0]
    assert [i["mode"] for i in body] == ["0644", "0644", "0755", "0755"]


def test_empty_directory_lists_as_empty_array(auth_client):
    make(auth_client, "/void/")
    response = auth_client.get("/v1/files/void")
    assert response.status_code == 200
    assert response.content == b"[]"


def test_listing_ignores_query_parameters(auth_client):
    make(auth_client, "/q/a/b.txt")
    body = json.loads(auth_client.get("/v1/files/q/", {"recursive": "true"}).content)
    assert [i["path"] for i in body] == ["/q/a"]


@pytest.mark.parametrize("url", ["/v1/files", "/v1/files/", "/v1/files/.", "/v1/files//"])
def test_root_listing(auth_client, url):
    make(auth_client, "/top.txt")
    make(auth_client, "/topdir/")
    response = auth_client.get(url)
    assert response.status_code == 200
    assert response["X-CallFS-Type"] == "directory"
    assert response["X-CallFS-Owner"] == "root"
    assert [i["path"] for i in json.loads(response.content)] == ["/top.txt", "/topdir"]


# --- PUT -------------------------------------------------------------------------------------


def test_put_creates_201_with_parents_then_overwrites_200(auth_client):
    created = upload(auth_client, "/put/sub/file.txt", b"one", method="put")
    assert created.status_code == 201
    assert body_of(created) == b""
    assert auth_client.head("/v1/files/put/sub")["X-CallFS-Type"] == "directory"
    bigger = upload(auth_client, "/put/sub/file.txt", b"a much longer content", method="put")
    assert bigger.status_code == 200
    assert body_of(bigger) == b""
    assert content(auth_client, "/put/sub/file.txt") == b"a much longer content"
    smaller = upload(auth_client, "/put/sub/file.txt", b"s", method="put")
    assert smaller.status_code == 200
    response = auth_client.get("/v1/files/put/sub/file.txt")
    assert body_of(response) == b"s"
    assert response["X-CallFS-Size"] == "1"


def test_put_empty_body_truncates(auth_client):
    make(auth_client, "/trunc.txt", b"something")
    assert upload(auth_client, "/trunc.txt", b"", method="put").status_code == 200
    response = auth_client.get("/v1/files/trunc.txt")
    assert body_of(response) == b""
    assert response["X-CallFS-Size"] == "0"


def test_put_keeps_owner_and_mode_and_updates_mtime(auth_client):
    make(auth_client, "/keep.txt", b"v1")
    backdate("/keep.txt")
    assert upload(auth_client, "/keep.txt", b"v2", method="put").status_code == 200
    head = auth_client.head("/v1/files/keep.txt")
    assert head["X-CallFS-Owner"] == "alice"
    assert head["X-CallFS-Mode"] == "0644"
    assert head["X-CallFS-MTime"] != "2021-02-03T04:05:06Z"
    assert MTIME.match(head["X-CallFS-MTime"])


@pytest.mark.parametrize("path", ["/newdir/", "/", "/existing/", "/missing/file/"])
def test_put_with_trailing_slash_is_400(auth_client, path):
    make(auth_client, "/existing/")
    body = assert_error(upload(auth_client, path, b"data", method="put"), 400)
    assert body["code"] in ("INVALID_REQUEST", "INVALID_PATH")
    assert not exists(auth_client, "/newdir")
    assert not exists(auth_client, "/missing")


def test_put_on_directory_is_400_is_a_directory(auth_client):
    make(auth_client, "/adir/child.txt", b"c")
    assert_error(upload(auth_client, "/adir", b"data", method="put"), 400, "IS_A_DIRECTORY")
    assert auth_client.head("/v1/files/adir")["X-CallFS-Type"] == "directory"
    assert content(auth_client, "/adir/child.txt") == b"c"


def test_put_below_a_file_is_400_not_a_directory(auth_client):
    make(auth_client, "/f.txt", b"f")
    assert_error(upload(auth_client, "/f.txt/x", b"d", method="put"), 400, "NOT_A_DIRECTORY")


# --- PATCH: rename / move --------------------------------------------------------------------


def test_patch_rename_with_name(auth_client):
    make(auth_client, "/rn-src.txt", b"payload")
    response = patch(auth_client, "/rn-src.txt", {"name": "rn-dst.txt"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")
    assert json.loads(response.content) == {"path": "/rn-dst.txt"}
    assert_error(auth_client.get("/v1/files/rn-src.txt"), 404, "FILE_NOT_FOUND")
    assert content(auth_client, "/rn-dst.txt") == b"payload"


def test_patch_rename_stays_in_the_same_directory(auth_client):
    make(auth_client, "/d/a.txt", b"a")
    response = patch(auth_client, "/d/a.txt", {"name": "b.txt"})
    assert json.loads(response.content) == {"path": "/d/b.txt"}
    assert content(auth_client, "/d/b.txt") == b"a"
    assert not exists(auth_client, "/d/a.txt")
    assert not exists(auth_client, "/b.txt")


@pytest.mark.parametrize(
    ("destination", "expected"),
    [
        ("/other/moved.txt", "/other/moved.txt"),
        ("other/moved.txt", "/other/moved.txt"),  # leading slash optional
        ("/other/x/../moved.txt", "/other/moved.txt"),  # canonicalised
        ("/other//moved.txt/", "/other/moved.txt"),  # slashes collapse, trailing one dropped
    ],
)
def test_patch_move_with_destination(auth_client, destination, expected):
    make(auth_client, "/src/m.txt", b"move me")
    make(auth_client, "/other/")
    response = patch(auth_client, "/src/m.txt", {"destination": destination})
    assert response.status_code == 200, response.content
    assert json.loads(response.content) == {"path": expected}
    assert content(auth_client, expected) == b"move me"
    assert not exists(auth_client, "/src/m.txt")


def test_patch_source_trailing_slash_is_ignored(auth_client):
    make(auth_client, "/sdir/")
    response = patch(auth_client, "/sdir/", {"name": "tdir"})
    assert json.loads(response.content) == {"path": "/tdir"}
    assert auth_client.head("/v1/files/tdir")["X-CallFS-Type"] == "directory"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": "a.txt", "destination": "/a.txt"},
        {"name": ""},
        {"destination": ""},
        {"name": "", "destination": ""},
        {"overwrite": True},
    ],
    ids=["neither", "both", "empty-name", "empty-destination", "both-empty", "only-options"],
)
def test_patch_needs_exactly_one_of_name_and_destination(auth_client, body):
    make(auth_client, "/one.txt", b"1")
    assert_error(patch(auth_client, "/one.txt", body), 400, "BAD_REQUEST")
    assert content(auth_client, "/one.txt") == b"1"


@pytest.mark.parametrize(
    "name",
    ["a/b", "/b.txt", "b/", ".", "..", "bad\\name", "nul\x00", "ctl\x01", "bidi\u202etxt",
     "x" * 256],
)
def test_patch_invalid_name_is_400_bad_request(auth_client, name):
    make(auth_client, "/one.txt", b"1")
    assert_error(patch(auth_client, "/one.txt", {"name": name}), 400, "BAD_REQUEST")
    assert content(auth_client, "/one.txt") == b"1"


@pytest.mark.parametrize(
    "destination",
    ["..", "/../x.txt", "../../etc/passwd", "/a/../../x", "bad\\dest", "nul\x00", "\u202e"],
)
def test_patch_invalid_destination_is_400_bad_request(auth_client, destination):
    make(auth_client, "/one.txt", b"1")
    assert_error(patch(auth_client, "/one.txt", {"destination": destination}), 400,
                 "BAD_REQUEST")
    assert content(auth_client, "/one.txt") == b"1"
    assert [i["path"] for i in json.loads(auth_client.get("/v1/files/").content)] == \
        ["/one.txt"]


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"patch", "application/octet-stream"),
        (b"{not json", "application/json"),
        (b"[1, 2]", "application/json"),
        (b'"name"', "application/json"),
        (b"", "application/json"),
        (b"\xff\xfe", "application/json"),
        (b'{"name": 5}', "application/json"),
        (b'{"destination": ["/x"]}', "application/json"),
        (b'{"name": "x.txt", "overwrite": "yes"}', "application/json"),
        (b'{"destination": "/x.txt", "create_parents": 1}', "application/json"),
    ],
)
def test_patch_bad_body_is_400_bad_request(auth_client, body, content_type):
    make(auth_client, "/one.txt", b"1")
    response = auth_client.patch("/v1/files/one.txt", data=body, content_type=content_type)
    assert_error(response, 400, "BAD_REQUEST")
    assert content(auth_client, "/one.txt") == b"1"


def test_patch_unknown_fields_are_ignored(auth_client):
    make(auth_client, "/one.txt", b"1")
    response = patch(auth_client, "/one.txt", {"name": "two.txt", "colour": "blue"})
    assert json.loads(response.content) == {"path": "/two.txt"}


def test_patch_missing_source_is_404(auth_client):
    assert_error(patch(auth_client, "/ghost.txt", {"name": "x.txt"}), 404, "FILE_NOT_FOUND")
    assert_error(patch(auth_client, "/ghost/", {"destination": "/x"}), 404, "FILE_NOT_FOUND")


def test_patch_destination_exists_is_409_and_changes_nothing(auth_client):
    make(auth_client, "/s.txt", b"source")
    make(auth_client, "/t.txt", b"target")
    assert_error(patch(auth_client, "/s.txt", {"name": "t.txt"}), 409, "FILE_ALREADY_EXISTS")
    assert_error(patch(auth_client, "/s.txt", {"destination": "/t.txt", "overwrite": False}),
                 409, "FILE_ALREADY_EXISTS")
    assert content(auth_client, "/s.txt") == b"source"
    assert content(auth_client, "/t.txt") == b"target"


@pytest.mark.parametrize("how", ["body", "query"])
def test_patch_overwrite_replaces_the_destination(auth_client, how):
    make(auth_client, "/s.txt", b"source")
    make(auth_client, "/t.txt", b"target")
    if how == "body":
        response = patch(auth_client, "/s.txt", {"destination": "/t.txt", "overwrite": True})
    else:
        response = patch(auth_client, "/s.txt?overwrite=true", {"destination": "/t.txt"})
    assert response.status_code == 200
    assert json.loads(response.content) == {"path": "/t.txt"}
    assert content(auth_client, "/t.txt") == b"source"
    assert not exists(auth_client, "/s.txt")
    assert [i["path"] for i in json.loads(auth_client.get("/v1/files/").content)] == ["/t.txt"]


def test_patch_overwrite_of_an_empty_directory_with_a_directory(auth_client):
    make(auth_client, "/from/inner.txt", b"in")
    make(auth_client, "/to/")
    response = patch(auth_client, "/from", {"destination": "/to", "overwrite": True})
    assert json.loads(response.content) == {"path": "/to"}
    assert content(auth_client, "/to/inner.txt") == b"in"
    assert not exists(auth_client, "/from")


def test_patch_destination_parent_must_exist(auth_client):
    make(auth_client, "/s.txt", b"source")
    body = assert_error(patch(auth_client, "/s.txt", {"destination": "/no/such/dir/s.txt"}),
                        400, "BAD_REQUEST")
    assert body["message"] == 'destination parent "/no/such/dir" does not exist'
    assert content(auth_client, "/s.txt") == b"source"
    assert not exists(auth_client, "/no")


def test_patch_create_parents(auth_client):
    make(auth_client, "/s.txt", b"source")
    response = patch(auth_client, "/s.txt",
                     {"destination": "/new/parents/s.txt", "create_parents": True})
    assert json.loads(response.content) == {"path": "/new/parents/s.txt"}
    assert content(auth_client, "/new/parents/s.txt") == b"source"
    head = auth_client.head("/v1/files/new/parents")
    assert head["X-CallFS-Type"] == "directory"
    assert head["X-CallFS-Owner"] == "alice"
    assert head["X-CallFS-Mode"] == "0755"


def test_patch_directory_moves_its_subtree(auth_client):
    make(auth_client, "/tree/a.txt", b"A")
    make(auth_client, "/tree/sub/b.txt", b"B")
    make(auth_client, "/tree/sub/empty/")
    response = patch(auth_client, "/tree", {"destination": "/moved/tree2",
                                            "create_parents": True})
    assert json.loads(response.content) == {"path": "/moved/tree2"}
    assert content(auth_client, "/moved/tree2/a.txt") == b"A"
    assert content(auth_client, "/moved/tree2/sub/b.txt") == b"B"
    assert auth_client.head("/v1/files/moved/tree2/sub/empty")["X-CallFS-Type"] == "directory"
    for old in ("/tree", "/tree/a.txt", "/tree/sub", "/tree/sub/b.txt", "/tree/sub/empty"):
        assert_error(auth_client.get(f"/v1/files{old}"), 404, "FILE_NOT_FOUND")
    listing = json.loads(auth_client.get("/v1/files/moved/tree2/sub").content)
    assert [i["path"] for i in listing] == ["/moved/tree2/sub/b.txt", "/moved/tree2/sub/empty"]


def test_a_moved_tree_keeps_every_path_key_true_and_leaves_its_neighbours(auth_client):
    """The database rebases a moved tree's paths and computes their keys (Inode.objects.rebase):
    each must be what Python's paths.path_key gives, non-ASCII names included, and entries
    that merely share the prefix, or differ only in case, stay where they are."""
    names = ["a.txt", "sub/ünï cödé ✓.txt", "sub/deeper/日本語/leaf", "sub/empty/"]
    for name in names:
        make(auth_client, f"/tree/{name}")
    for neighbour in ("/tree2/x", "/treehouse/y", "/Tree/z", "/TREE/sub/w"):
        make(auth_client, neighbour)
    before = {i.pk: i.path for i in Inode.objects.all()}
    response = patch(auth_client, "/tree", {"destination": "/møved/trée", "create_parents": True})
    assert response.status_code == 200, response.content
    for inode in Inode.objects.all():
        assert inode.path_hash == paths.path_key(inode.path), inode.path
        old = before.get(inode.pk)
        if old is None:
            assert inode.path == "/møved"  # created as the new parent
        elif old == "/tree" or old.startswith("/tree/"):
            assert inode.path == "/møved/trée" + old[len("/tree"):]
        else:
            assert inode.path == old
    for name in names:
        assert exists(auth_client, f"/møved/trée/{name.rstrip('/')}")
        assert not exists(auth_client, f"/tree/{name.rstrip('/')}")
    assert content(auth_client, "/møved/trée/sub/deeper/日本語/leaf") == b"x"
    assert content(auth_client, "/Tree/z") == b"x"


@pytest.mark.parametrize("destination", ["/a/b", "/a/b/c/d", "a/x/../b"])
def test_patch_destination_inside_source_is_400(auth_client, destination):
    make(auth_client, "/a/b/c/")
    assert_error(patch(auth_client, "/a", {"destination": destination,
                                           "create_parents": True}), 400, "BAD_REQUEST")
    assert auth_client.head("/v1/files/a/b/c")["X-CallFS-Type"] == "directory"


def test_patch_sibling_with_common_prefix_is_not_inside(auth_client):
    make(auth_client, "/a/f.txt", b"f")
    response = patch(auth_client, "/a", {"destination": "/ab"})
    assert json.loads(response.content) == {"path": "/ab"}
    assert content(auth_client, "/ab/f.txt") == b"f"


def test_patch_destination_equal_to_source_is_400(auth_client):
    make(auth_client, "/same.txt", b"s")
    assert_error(patch(auth_client, "/same.txt", {"destination": "/same.txt"}), 400,
                 "BAD_REQUEST")
    assert_error(patch(auth_client, "/same.txt", {"name": "same.txt"}), 400, "BAD_REQUEST")
    assert content(auth_client, "/same.txt") == b"s"


def test_patch_to_root_is_400(auth_client):
    make(auth_client, "/s.txt", b"s")
    assert_error(patch(auth_client, "/s.txt", {"destination": "/", "overwrite": True}), 400,
                 "BAD_REQUEST")
    assert content(auth_client, "/s.txt") == b"s"


def test_patch_of_root_is_refused(auth_client):
    assert_error(patch(auth_client, "/", {"name": "x"}), 403, "PERMISSION_DENIED")


def test_patch_keeps_owner_mode_and_mtime(auth_client):
    make(auth_client, "/dir1/k.txt", b"keep")
    backdate("/dir1/k.txt")
    backdate("/dir1")
    assert patch(auth_client, "/dir1/k.txt", {"name": "k2.txt"}).status_code == 200
    assert patch(auth_client, "/dir1", {"name": "dir2"}).status_code == 200
    for path, mode in (("/dir2/k2.txt", "0644"), ("/dir2", "0755")):
        head = auth_client.head(f"/v1/files{path}")
        assert head["X-CallFS-Owner"] == "alice"
        assert head["X-CallFS-Mode"] == mode
        assert head["X-CallFS-MTime"] == "2021-02-03T04:05:06Z"
    assert content(auth_client, "/dir2/k2.txt") == b"keep"


# --- DELETE ----------------------------------------------------------------------------------


def test_delete_file_is_204_and_it_is_gone(auth_client):
    make(auth_client, "/del/f.txt", b"f")
    response = auth_client.delete("/v1/files/del/f.txt")
    assert response.status_code == 204
    assert body_of(response) == b""
    assert_error(auth_client.get("/v1/files/del/f.txt"), 404, "FILE_NOT_FOUND")
    assert json.loads(auth_client.get("/v1/files/del").content) == []


@pytest.mark.parametrize("suffix", ["", "/"])
def test_delete_empty_directory_is_204(auth_client, suffix):
    make(auth_client, "/emptydir/")
    assert auth_client.delete(f"/v1/files/emptydir{suffix}").status_code == 204
    assert not exists(auth_client, "/emptydir")


def test_delete_non_empty_directory_is_409(auth_client):
    make(auth_client, "/full/child.txt", b"c")
    assert_error(auth_client.delete("/v1/files/full"), 409, "DIRECTORY_NOT_EMPTY")
    assert_error(auth_client.delete("/v1/files/full/?recursive=false"), 409,
                 "DIRECTORY_NOT_EMPTY")
    assert content(auth_client, "/full/child.txt") == b"c"


def test_delete_recursive_removes_the_subtree(auth_client):
    make(auth_client, "/rm/a.txt", b"a")
    make(auth_client, "/rm/sub/b.txt", b"b")
    make(auth_client, "/rm/sub/deeper/")
    make(auth_client, "/keep.txt", b"k")
    response = auth_client.delete("/v1/files/rm/?recursive=true")
    assert response.status_code == 204
    for gone in ("/rm", "/rm/a.txt", "/rm/sub", "/rm/sub/b.txt", "/rm/sub/deeper"):
        assert not exists(auth_client, gone), gone
    assert content(auth_client, "/keep.txt") == b"k"
    make(auth_client, "/rm/a.txt", b"new")
    assert content(auth_client, "/rm/a.txt") == b"new"


def test_delete_recursive_removes_every_blob_before_it_answers(
        auth_client, monkeypatch, django_capture_on_commit_callbacks):
    """The blobs of a deleted tree are gone when the 204 arrives, however many batches their
    unlinking takes; other files keep theirs."""
    monkeypatch.setattr("filesystem.services.blobs.DISCARD_BATCH", 3)
    for index in range(8):
        make(auth_client, f"/many/d{index % 2}/f{index}", b"%d" % index)
    make(auth_client, "/kept.txt", b"k")
    keys = set(Inode.objects.filter(path__startswith="/many/", type="file")
               .values_list("blob_key", flat=True))
    assert len(keys) == 8
    blobs = settings.CALLFS.data_dir / "blobs"
    on_disk = {path.name for path in blobs.rglob("*") if path.is_file()}
    assert keys <= on_disk
    with django_capture_on_commit_callbacks(execute=True):  # the test's transaction "commits"
        assert auth_client.delete("/v1/files/many/?recursive=true").status_code == 204
    left = {path.name for path in blobs.rglob("*") if path.is_file()}
    assert not keys & left
    assert Inode.objects.get(path="/kept.txt").blob_key in left


def test_delete_recursive_on_a_file(auth_client):
    make(auth_client, "/single.txt", b"s")
    assert auth_client.delete("/v1/files/single.txt?recursive=true").status_code == 204
    assert not exists(auth_client, "/single.txt")


def test_delete_missing_is_404(auth_client):
    assert_error(auth_client.delete("/v1/files/nothing-here.txt"), 404, "FILE_NOT_FOUND")
    assert_error(auth_client.delete("/v1/files/no/such/dir/"), 404, "FILE_NOT_FOUND")


@pytest.mark.parametrize("url", ["/v1/files/", "/v1/files", "/v1/files/?recursive=true"])
def test_delete_root_is_refused(auth_client, url):
    make(auth_client, "/survivor.txt", b"s")
    assert_error(auth_client.delete(url), 403, "PERMISSION_DENIED")
    assert content(auth_client, "/survivor.txt") == b"s"


# --- percent-encoding, `//`, dot segments (§4.1, §16.1 items 7 and 13) -----------------------


def test_percent_encoded_spaces(auth_client):
    assert upload(auth_client, "/file%20with%20spaces.txt", b"sp").status_code == 201
    assert content(auth_client, "/file%20with%20spaces.txt") == b"sp"
    names = [i["name"] for i in json.loads(auth_client.get("/v1/files/").content)]
    assert names == ["file with spaces.txt"]


def test_percent_2f_is_a_slash_after_one_decode(auth_client):
    assert upload(auth_client, "/enc%2Fsub.txt", b"slash").status_code == 201
    assert content(auth_client, "/enc/sub.txt") == b"slash"
    assert auth_client.head("/v1/files/enc")["X-CallFS-Type"] == "directory"
    assert_error(auth_client.get("/v1/files/..%2F..%2Fetc%2Fpasswd"), 400, "INVALID_PATH")


@pytest.mark.parametrize(
    ("sent", "name"),
    [
        ("test%EF%BC%8Ffile.txt", "test\uff0ffile.txt"),
        ("%252e%252e%252f%252e%252e%252fetc%252fpasswd", "%2e%2e%2f%2e%2e%2fetc%2fpasswd"),
        ("file%2Bplus.txt", "file+plus.txt"),
        ("file%40at.txt", "file@at.txt"),
        ("caf%C3%A9.txt", "caf\u00e9.txt"),
    ],
)
def test_percent_encoding_is_decoded_exactly_once(auth_client, sent, name):
    assert upload(auth_client, f"/{sent}", b"enc").status_code == 201
    listing = json.loads(auth_client.get("/v1/files/").content)
    assert [(i["name"], i["path"]) for i in listing] == [(name, f"/{name}")]
    assert content(auth_client, f"/{sent}") == b"enc"


@pytest.mark.parametrize("sent", ["test%5Cfile.txt", "test%00file.txt", "dir/%5C",
                                  "a%0Ab.txt", "a%E2%80%AEb.txt"])
@pytest.mark.parametrize("method", ["get", "post", "put", "delete", "patch"])
def test_invalid_characters_are_400_invalid_path(auth_client, sent, method):
    if method == "patch":
        response = patch(auth_client, f"/{sent}", {"name": "x"})
    elif method in ("get", "delete"):
        response = getattr(auth_client, method)(f"/v1/files/{sent}")
    else:
        response = upload(auth_client, f"/{sent}", b"x", method=method)
    assert_error(response, 400, "INVALID_PATH")
    assert json.loads(auth_client.get("/v1/files/").content) == []


def test_head_with_invalid_path_is_400(auth_client):
    response = auth_client.head("/v1/files/test%5Cfile.txt")
    assert response.status_code == 400
    assert body_of(response) == b""


@pytest.mark.parametrize("url", ["/v1/files/..", "/v1/files/../etc/passwd",
                                 "/v1/files/a/../../x", "/v1/files/%2E%2E/x"])
def test_escaping_the_root_is_400_not_clamped(auth_client, url):
    make(auth_client, "/x", b"x")
    assert_error(auth_client.get(url), 400, "INVALID_PATH")
    assert_error(auth_client.delete(url), 400, "INVALID_PATH")
    assert content(auth_client, "/x") == b"x"


def test_double_slashes_collapse(auth_client):
    make(auth_client, "/slash-test.txt", b"s")
    response = auth_client.get("/v1/files//slash-test.txt")
    assert response.status_code == 200
    assert body_of(response) == b"s"
    assert upload(auth_client, "/a//b.txt", b"ab").status_code == 201
    assert content(auth_client, "/a/b.txt") == b"ab"
    assert upload(auth_client, "/dd//ee//", b"").status_code == 201
    assert auth_client.head("/v1/files/dd/ee")["X-CallFS-Type"] == "directory"


def test_dot_segments_resolve_to_the_canonical_path(auth_client):
    make(auth_client, "/secret.txt", b"mine")
    response = auth_client.get("/v1/files/dir/../secret.txt")
    assert body_of(response) == b"mine"
    assert upload(auth_client, "/x/./y/../z.txt", b"z").status_code == 201
    assert content(auth_client, "/x/z.txt") == b"z"
    assert not exists(auth_client, "/x/y")


def test_name_length_limits(auth_client):
    assert upload(auth_client, "/" + "n" * 255, b"ok").status_code == 201
    assert_error(upload(auth_client, "/" + "n" * 256, b"no"), 400, "INVALID_PATH")
    assert_error(auth_client.get("/v1/files/" + "n" * 5000), 400, "INVALID_PATH")


@pytest.mark.parametrize("body", [b"[" * 50_000, b'{"a":' * 20_000, b"\xff\xfe", b"1e999999"])
def test_hostile_patch_bodies_are_400_not_500(auth_client, body):
    make(auth_client, "/hostile.txt", b"x")
    response = auth_client.patch("/v1/files/hostile.txt", data=body,
                                 content_type="application/json")
    assert_error(response, 400, "BAD_REQUEST")
    assert auth_client.get("/v1/files/hostile.txt").status_code == 200


def test_inserts_get_their_id_with_or_without_returning(auth_client, monkeypatch):
    """INSERT ... RETURNING id where the database has it; SQLite before 3.35 has not, and the
    new id comes from lastrowid."""
    from django.db import connection
    make(auth_client, "/ids/a.txt", b"abc")
    if connection.vendor == "sqlite":
        monkeypatch.setattr(connection.features, "can_return_columns_from_insert", False)
    make(auth_client, "/ids/more/b.txt", b"def")
    more = Inode.objects.get(path="/ids/more")
    assert Inode.objects.get(path="/ids/more/b.txt").parent == more
    assert more.parent == Inode.objects.get(path="/ids")
    assert content(auth_client, "/ids/more/b.txt") == b"def"

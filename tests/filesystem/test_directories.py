"""GET /v1/directories/{path} (API.md §7.10 with §16.1 item 12 and §16.5: max_depth=0 lists
immediate children only). Pages and streaming: test_listing_pages.py."""

import gc
import json
import re
import weakref

import pytest

from tests.helpers import assert_error, through_application, upload

FILE_INFO_KEYS = ["name", "path", "type", "size", "mode", "owner", "group", "mtime"]
MTIME = re.compile(r"\A20\d\d-\d\d-\d\dT\d\d:\d\d:\d\dZ\Z")


def make(client, *paths_: str) -> None:
    for path in paths_:
        response = upload(client, path, b"data")
        assert response.status_code == 201, (path, response.status_code, response.content)


def listing(client, path: str = "", **query) -> dict:
    response = client.get(f"/v1/directories/{path.lstrip('/')}", query)
    assert response.status_code == 200, (response.status_code, response.content[:300])
    body = json.loads(response.content)
    assert response["Content-Type"] == "application/json"
    assert response["X-CallFS-Type"] == "directory"
    assert response["X-CallFS-Count"] == str(body["count"]) == str(len(body["items"]))
    assert response["X-CallFS-Recursive"] == ("true" if body["recursive"] else "false")
    return body


def item_paths(body: dict) -> list[str]:
    return [i["path"] for i in body["items"]]


@pytest.fixture
def small_tree(auth_client):
    make(auth_client, "/lst/b.txt", "/lst/a.txt", "/lst/zdir/", "/lst/adir/inner.txt")


@pytest.fixture
def chain(auth_client):
    make(auth_client, "/d1/d2/d3/d4/d5/leaf.txt")


# --- non-recursive ---------------------------------------------------------------------------


def test_non_recursive_lists_immediate_children(auth_client, small_tree):
    body = listing(auth_client, "/lst")
    assert list(body) == ["path", "type", "recursive", "count", "items"]
    assert body["path"] == "/lst"
    assert body["type"] == "directory"
    assert body["recursive"] is False
    assert body["count"] == 4
    # Files first, then directories, each alphabetically.
    assert item_paths(body) == ["/lst/a.txt", "/lst/b.txt", "/lst/adir", "/lst/zdir"]


def test_items_are_file_info_objects(auth_client, small_tree):
    items = listing(auth_client, "/lst")["items"]
    for item in items:
        assert list(item) == FILE_INFO_KEYS
        assert MTIME.match(item["mtime"])
        assert item["owner"] == "alice"
        assert isinstance(item["group"], str)
    first, directory = items[0], items[2]
    assert {k: first[k] for k in FILE_INFO_KEYS[:6]} == {
        "name": "a.txt", "path": "/lst/a.txt", "type": "file", "size": 4, "mode": "0644",
        "owner": "alice"}
    assert {k: directory[k] for k in FILE_INFO_KEYS[:6]} == {
        "name": "adir", "path": "/lst/adir", "type": "directory", "size": 0, "mode": "0755",
        "owner": "alice"}


def test_compact_json(auth_client, small_tree):
    response = auth_client.get("/v1/directories/lst")
    body = json.loads(response.content)
    assert response.content == json.dumps(body, separators=(",", ":"),
                                          ensure_ascii=False).encode()


@pytest.mark.parametrize("suffix", ["", "/", "//"])
def test_trailing_slash_lists_the_same_directory(auth_client, small_tree, suffix):
    body = listing(auth_client, f"/lst{suffix}")
    assert body["path"] == "/lst"
    assert body["count"] == 4


@pytest.mark.parametrize("url", ["/v1/directories", "/v1/directories/", "/v1/directories/."])
def test_root_listing(auth_client, small_tree, url):
    response = auth_client.get(url)
    assert response.status_code == 200
    body = json.loads(response.content)
    assert body["path"] == "/"
    assert item_paths(body) == ["/lst"]
    assert response["X-CallFS-Count"] == "1"


def test_empty_directory(auth_client):
    make(auth_client, "/void/")
    body = listing(auth_client, "/void")
    assert body["items"] == []
    assert body["count"] == 0
    recursive = listing(auth_client, "/void", recursive="true")
    assert recursive["items"] == []
    assert recursive["count"] == 0


@pytest.mark.parametrize("value", ["false", "TRUE", "True", "1", "yes", ""])
def test_only_exact_true_is_recursive(auth_client, small_tree, value):
    body = listing(auth_client, "/lst", recursive=value)
    assert body["recursive"] is False
    assert "max_depth" not in body
    assert "/lst/adir/inner.txt" not in item_paths(body)


# --- recursive and max_depth -----------------------------------------------------------------


def test_recursive_default_reaches_the_leaf(auth_client, chain):
    body = listing(auth_client, "/d1", recursive="true")
    assert list(body) == ["path", "type", "recursive", "max_depth", "count", "items"]
    assert body["recursive"] is True
    assert body["max_depth"] == 100
    assert item_paths(body) == ["/d1/d2", "/d1/d2/d3", "/d1/d2/d3/d4", "/d1/d2/d3/d4/d5",
                                "/d1/d2/d3/d4/d5/leaf.txt"]
    assert body["count"] == 5


def test_max_depth_2_contains_d3_not_leaf(auth_client, chain):
    body = listing(auth_client, "/d1", recursive="true", max_depth="2")
    assert body["max_depth"] == 2
    # max_depth=N reaches N+1 levels below the listed directory.
    assert item_paths(body) == ["/d1/d2", "/d1/d2/d3", "/d1/d2/d3/d4"]


def test_max_depth_100_contains_leaf(auth_client, chain):
    body = listing(auth_client, "/d1", recursive="true", max_depth="100")
    assert body["max_depth"] == 100
    assert "/d1/d2/d3/d4/d5/leaf.txt" in item_paths(body)


def test_max_depth_1_contains_b_and_c_not_deep(auth_client):
    make(auth_client, "/a/b/c/deep.txt")
    body = listing(auth_client, "/a", recursive="true", max_depth="1")
    assert body["max_depth"] == 1
    assert item_paths(body) == ["/a/b", "/a/b/c"]
    assert body["count"] == 2


def test_max_depth_is_ignored_without_recursive(auth_client, chain):
    body = listing(auth_client, "/d1", max_depth="3")
    assert body["recursive"] is False
    assert "max_depth" not in body
    assert item_paths(body) == ["/d1/d2"]


def test_max_depth_0_lists_immediate_children_only(auth_client, chain):
    # Upstream's 17-directory-edge-cases: "List /d1 with max_depth=0 returns immediate children
    # only" (API.md §7.10, §16.5); max_depth stays in the object.
    body = listing(auth_client, "/d1", recursive="true", max_depth="0")
    assert list(body) == ["path", "type", "recursive", "max_depth", "count", "items"]
    assert body["max_depth"] == 0
    assert item_paths(body) == ["/d1/d2"]
    assert body["count"] == 1


def test_max_depth_0_lists_files_and_directories_but_enters_none(auth_client, small_tree):
    body = listing(auth_client, "/lst", recursive="true", max_depth="0")
    assert item_paths(body) == item_paths(listing(auth_client, "/lst"))


def test_the_default_depth_is_100(auth_client):
    # 101 nested directories and a leaf 102 levels below /deep: the default depth (100) reaches
    # 101 levels and stops just short of the leaf; max_depth=101 reaches it.
    make(auth_client, "/deep/" + "n/" * 101 + "leaf.txt")
    leaf = "/deep/" + "n/" * 101 + "leaf.txt"
    default = listing(auth_client, "/deep", recursive="true")
    assert default["max_depth"] == 100
    assert default["count"] == 101
    assert leaf not in item_paths(default)
    deeper = listing(auth_client, "/deep", recursive="true", max_depth="101")
    assert deeper["max_depth"] == 101
    assert deeper["count"] == 102
    assert item_paths(deeper)[-1] == leaf


def test_max_depth_over_1000_is_capped(auth_client, chain):
    body = listing(auth_client, "/d1", recursive="true", max_depth="5000")
    assert body["max_depth"] == 1000
    assert body["count"] == 5


@pytest.mark.parametrize("value", ["abc", "1.5", "two", "0x2", "-"])
def test_non_integer_max_depth_is_400(auth_client, chain, value):
    response = auth_client.get("/v1/directories/d1", {"recursive": "true", "max_depth": value})
    assert_error(response, 400, "INVALID_REQUEST")


def test_recursive_order(auth_client):
    make(auth_client, "/o/z.txt", "/o/a.txt", "/o/b/2.txt", "/o/b/1.txt", "/o/b/sub/x.txt",
         "/o/a/f.txt", "/o/a/empty/")
    body = listing(auth_client, "/o", recursive="true")
    # Each directory's children (files, then directories, by name) come together, before the
    # subtrees of its subdirectories, which follow in child order.
    assert item_paths(body) == [
        "/o/a.txt", "/o/z.txt", "/o/a", "/o/b",
        "/o/a/f.txt", "/o/a/empty",
        "/o/b/1.txt", "/o/b/2.txt", "/o/b/sub",
        "/o/b/sub/x.txt",
    ]
    assert body["count"] == 10
    assert [i["type"] for i in body["items"][:4]] == ["file", "file", "directory", "directory"]


def test_recursive_listing_of_the_root(auth_client, small_tree):
    body = listing(auth_client, "", recursive="true")
    assert body["path"] == "/"
    assert item_paths(body) == ["/lst", "/lst/a.txt", "/lst/b.txt", "/lst/adir", "/lst/zdir",
                                "/lst/adir/inner.txt"]


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize("recursive", ["false", "true"])
def test_missing_directory_is_404(auth_client, recursive):
    assert_error(auth_client.get("/v1/directories/nope", {"recursive": recursive}), 404,
                 "FILE_NOT_FOUND")
    assert_error(auth_client.get("/v1/directories/no/such/dir/"), 404, "FILE_NOT_FOUND")


@pytest.mark.parametrize("recursive", ["false", "true"])
def test_file_is_400_not_a_directory(auth_client, small_tree, recursive):
    response = auth_client.get("/v1/directories/lst/a.txt", {"recursive": recursive})
    assert_error(response, 400, "NOT_A_DIRECTORY")


@pytest.mark.parametrize("url", ["/v1/directories/..", "/v1/directories/a%5Cb",
                                 "/v1/directories/x%00"])
def test_invalid_path_is_400(auth_client, url):
    assert_error(auth_client.get(url), 400, "INVALID_PATH")


@pytest.mark.parametrize("url", ["/v1/directories/big", "/v1/files/big/"])
def test_a_listing_is_freed_as_soon_as_it_is_sent(auth_client, user_and_key, url):
    """Without the cyclic garbage collector: a listing's entries and rendered body must not
    wait for it (DRF's Response, its view and its renderer context refer to each other)."""
    make(auth_client, "/big/a.txt", "/big/b.txt")
    kept: list[weakref.ref] = []
    gc.collect()
    gc.disable()
    try:
        status, _, content = through_application(url, user_and_key[1],
                                                 keep=lambda response: kept.append(
                                                     weakref.ref(response)))
        assert status == 200 and b"a.txt" in content
        assert kept[0]() is None
    finally:
        gc.enable()

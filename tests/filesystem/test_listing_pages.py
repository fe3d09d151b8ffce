"""Listings in constant memory (issue 21 item 5, API.md §16.5): long listings stream, and
`/v1/directories/{path}` answers pages (`limit`, `cursor` -> `next_cursor`) in the order of the
complete answer, re-checking permissions on every page.

Most tests shrink the sizes that decide when a listing streams and how many rows one query reads
(`SMALL`), so that a tree of a few dozen entries crosses every boundary: a directory read type by
type, subdirectories fetched a page at a time, children of several directories fetched at once.
"""

from __future__ import annotations

import json

import pytest
from django.core import signing
from django.db import connection
from django.test.utils import CaptureQueriesContext

from filesystem import paths
from filesystem.api import listing as listing_api
from filesystem.models import Inode, InodeType
from filesystem.services import lookup
from tests.helpers import assert_error, body_of, upload

# Names that sort differently by name and by path text ("a b" < "a" + "/" in bytes): the
# listing order is a directory's children, then each subdirectory's subtree in child order.
TREE = [
    "/t/z.txt", "/t/a.txt", "/t/a b.txt",
    "/t/a/1.txt", "/t/a/2.txt", "/t/a/3.txt", "/t/a/deep/er/leaf.txt", "/t/a/empty/",
    "/t/a b/x.txt", "/t/a-b/y.txt", "/t/a.b/",
    "/t/b/", "/t/c/k1.txt", "/t/c/k2.txt", "/t/c/sub/s.txt",
]


def make(client, *paths_: str) -> None:
    for path in paths_:
        response = upload(client, path, b"data")
        assert response.status_code == 201, (path, response.status_code, response.content)


def get(client, path: str, **query):
    return client.get(f"/v1/directories/{path.lstrip('/')}", query)


def body(response) -> dict:
    assert response.status_code == 200, (response.status_code, body_of(response)[:300])
    assert response["Content-Type"] == "application/json"
    return json.loads(body_of(response))


def names(items: list[dict]) -> list[str]:
    return [item["path"] for item in items]


def expected_order(client, path: str, levels: int = 1001) -> list[str]:
    """The contract's order, built from plain listings: a directory's children, then each
    subdirectory's subtree in child order (each directory's own order is the server's)."""
    items = body(get(client, path))["items"]
    order = names(items)
    if levels > 1:
        for item in items:
            if item["type"] == "directory":
                order += expected_order(client, item["path"], levels - 1)
    return order


def pages(client, path: str, limit: int, **query) -> list[list[str]]:
    found, cursor = [], None
    while True:
        extra = {"cursor": cursor} if cursor else {}
        response = get(client, path, limit=str(limit), **query, **extra)
        page = body(response)
        assert not response.streaming
        assert page["count"] == len(page["items"]) <= limit
        assert response["X-CallFS-Count"] == str(page["count"])
        found.append(names(page["items"]))
        cursor = page.get("next_cursor")
        if cursor is None:
            return found
        assert page["count"] == limit
        assert len(found) < 500, "pages do not end"


# (rows per query, subdirectories kept per level, rows read ahead)
SIZES = {"tiny": (2, 2, 5), "few-kept": (10, 2, 5), "no-read-ahead": (3, 1, 0)}


@pytest.fixture(params=["tiny"])
def small(request, monkeypatch):
    """Sizes small enough for a test tree to cross every boundary of the listing code: a
    directory read type by type, subdirectories read a page at a time, read-ahead."""
    page, pending, ahead = SIZES[request.param]
    monkeypatch.setattr(listing_api, "WHOLE_ANSWER_ENTRIES", 3)
    monkeypatch.setattr(listing_api, "CHUNK_ENTRIES", 2)
    monkeypatch.setattr(lookup, "LISTING_PAGE", page)
    monkeypatch.setattr(lookup, "LISTING_PENDING", pending)
    monkeypatch.setattr(lookup, "LISTING_PREFETCH_ROWS", ahead)


every_size = pytest.mark.parametrize("small", list(SIZES), indirect=True)


@pytest.fixture
def tree(auth_client):
    make(auth_client, *TREE)
    return expected_order(auth_client, "/t")


# --- streaming -------------------------------------------------------------------------------


def test_the_tree_order_is_the_contracts(auth_client, tree):
    if connection.vendor == "sqlite":  # names compare as bytes; PostgreSQL uses its collation
        assert tree == [
            "/t/a b.txt", "/t/a.txt", "/t/z.txt", "/t/a", "/t/a b", "/t/a-b", "/t/a.b", "/t/b",
            "/t/c", "/t/a/1.txt", "/t/a/2.txt", "/t/a/3.txt", "/t/a/deep", "/t/a/empty",
            "/t/a/deep/er", "/t/a/deep/er/leaf.txt", "/t/a b/x.txt", "/t/a-b/y.txt",
            "/t/c/k1.txt", "/t/c/k2.txt", "/t/c/sub", "/t/c/sub/s.txt"]
    assert len(tree) == len(set(tree)) == 22
    assert names(body(get(auth_client, "/t", recursive="true"))["items"]) == tree


def test_a_long_listing_streams_items_then_count(auth_client, tree, small):
    response = get(auth_client, "/t", recursive="true")
    assert response.streaming
    assert not response.has_header("Content-Length")
    assert not response.has_header("X-CallFS-Count")  # unknown when the head is sent
    assert (response["X-CallFS-Type"], response["X-CallFS-Recursive"]) == ("directory", "true")
    raw = body_of(response)
    listing = json.loads(raw)
    assert list(listing) == ["path", "type", "recursive", "max_depth", "items", "count"]
    assert listing["count"] == len(listing["items"]) == 22
    assert names(listing["items"]) == tree
    assert raw == json.dumps(listing, separators=(",", ":"), ensure_ascii=False).encode()


def test_a_streamed_listing_equals_the_whole_answer(auth_client, tree, monkeypatch):
    whole = body(get(auth_client, "/t", recursive="true"))
    monkeypatch.setattr(listing_api, "WHOLE_ANSWER_ENTRIES", 0)
    streamed = body(get(auth_client, "/t", recursive="true"))
    assert streamed == whole


def test_line_separators_are_escaped_as_drf_does(auth_client, monkeypatch):
    make(auth_client, "/u\u2028d/x\u2029.txt")
    whole = auth_client.get("/v1/directories/u\u2028d", {"recursive": "true"})
    assert not whole.streaming
    assert b"\\u2028" in whole.content and b"\\u2029" in whole.content
    assert "\u2028".encode() not in whole.content
    monkeypatch.setattr(listing_api, "WHOLE_ANSWER_ENTRIES", 0)
    streamed = auth_client.get("/v1/directories/u\u2028d", {"recursive": "true"})
    assert streamed.streaming
    assert json.loads(body_of(streamed)) == json.loads(whole.content)
    assert "\u2028".encode() not in body_of(auth_client.get(
        "/v1/directories/u\u2028d", {"recursive": "true"}))


@every_size
@pytest.mark.parametrize("depth", ["0", "1", "2", "100"])
def test_internal_pages_keep_the_order(auth_client, tree, small, depth):
    listing = body(get(auth_client, "/t", recursive="true", max_depth=depth))
    assert names(listing["items"]) == expected_order(auth_client, "/t", int(depth) + 1)
    assert listing["max_depth"] == int(depth)


def test_a_short_listing_is_answered_whole(auth_client, tree, small):
    make(auth_client, "/short/a.txt", "/short/b/")
    response = get(auth_client, "/short", recursive="true")
    assert not response.streaming
    assert response["Content-Length"] == str(len(response.content))
    assert response["X-CallFS-Count"] == "2"
    assert list(json.loads(response.content)) == ["path", "type", "recursive", "max_depth",
                                                  "count", "items"]


def test_get_on_a_directory_streams_a_long_array(auth_client, tree, monkeypatch):
    whole = auth_client.get("/v1/files/t")
    assert not whole.streaming
    monkeypatch.setattr(listing_api, "WHOLE_ANSWER_ENTRIES", 2)
    monkeypatch.setattr(listing_api, "CHUNK_ENTRIES", 2)
    streamed = auth_client.get("/v1/files/t/")
    assert streamed.streaming
    assert body_of(streamed) == whole.content  # the same bare array, byte for byte
    assert streamed["X-CallFS-Type"] == "directory"
    assert [item["path"] for item in json.loads(whole.content)] == tree[:9]


def test_a_long_listing_is_read_as_it_is_sent(auth_client, tree, small):
    """Rows come from the database page by page while the body moves, not all up front."""
    with CaptureQueriesContext(connection) as queries:
        response = get(auth_client, "/t", recursive="true")
        answered = len(queries)
        listing = json.loads(body_of(response))
        sent = len(queries)
    assert listing["count"] == 22
    assert sent > answered + 3


def test_a_streamed_listing_gives_its_pooled_connection_back_while_a_piece_travels(
        auth_client, tree, small, monkeypatch):
    """A slow reader of a long listing must not hold one of the worker's pooled connections
    for the whole transfer: it is given back before each piece goes out."""
    released = []
    monkeypatch.setattr(listing_api, "release_connections",
                        lambda long_transfer: released.append(long_transfer))
    response = get(auth_client, "/t", recursive="true")
    pieces = list(response.streaming_content)
    assert len(released) == len(pieces) - 1 >= 3  # all but the closing bracket
    assert set(released) == {False}


def test_a_directory_of_many_entries_with_the_real_sizes(auth_client, user):
    """More children than one query reads (1,000), files and directories interleaved by name:
    the listing streams, each type in name order, and pages cut anywhere."""
    make(auth_client, "/many/")
    parent = Inode.objects.get(path="/many")
    rows = []
    for index in range(2500):
        kind = InodeType.DIRECTORY if index % 3 == 0 else InodeType.FILE
        path = f"/many/n{index:05d}"
        rows.append(Inode(parent=parent, name=paths.name_of(path), path=path,
                          path_hash=paths.path_key(path), type=kind, owner=user,
                          group_id=parent.group_id, mode=0o755 if kind == "directory" else 0o644))
    Inode.objects.bulk_create(rows)
    response = get(auth_client, "/many", recursive="true")
    assert response.streaming
    listing = json.loads(body_of(response))
    files = sorted(r.path for r in rows if r.type == InodeType.FILE)
    directories = sorted(r.path for r in rows if r.type == InodeType.DIRECTORY)
    assert names(listing["items"]) == files + directories
    assert listing["count"] == 2500
    assert [p for page in pages(auth_client, "/many", 999) for p in page] == files + directories


# --- pages -----------------------------------------------------------------------------------


@every_size
@pytest.mark.parametrize("limit", [1, 2, 3, 7, 21, 22, 23, 100])
def test_pages_join_up_to_the_complete_listing(auth_client, tree, small, limit):
    found = pages(auth_client, "/t", limit, recursive="true")
    assert [path for page in found for path in page] == tree
    assert len(found) == max(1, -(-22 // limit))


@pytest.mark.parametrize("limit", [1, 4])
def test_pages_of_a_plain_listing(auth_client, tree, limit):
    found = pages(auth_client, "/t", limit)
    assert [path for page in found for path in page] == tree[:9]


@pytest.mark.parametrize("depth", ["0", "1"])
def test_pages_respect_max_depth(auth_client, tree, small, depth):
    found = pages(auth_client, "/t", 4, recursive="true", max_depth=depth)
    assert [p for page in found for p in page] == expected_order(auth_client, "/t",
                                                                 int(depth) + 1)


def test_a_page_object(auth_client, tree):
    response = get(auth_client, "/t", recursive="true", limit="5")
    page = body(response)
    assert list(page) == ["path", "type", "recursive", "max_depth", "count", "items",
                          "next_cursor"]
    assert page["count"] == 5 and response["X-CallFS-Count"] == "5"
    assert response["Content-Length"] == str(len(response.content))
    last = body(get(auth_client, "/t", limit="100"))
    assert "next_cursor" not in last and last["count"] == 9


def test_an_empty_directory_has_one_empty_page(auth_client):
    make(auth_client, "/void/")
    page = body(get(auth_client, "/void", recursive="true", limit="10"))
    assert (page["items"], page["count"], "next_cursor" in page) == ([], 0, False)


def test_pages_go_on_after_the_last_entry_was_deleted(auth_client, tree, small):
    cut = tree.index("/t/a/3.txt") + 1
    first = body(get(auth_client, "/t", recursive="true", limit=str(cut)))
    assert names(first["items"]) == tree[:cut]
    assert auth_client.delete("/v1/files/t/a/3.txt").status_code == 204
    make(auth_client, "/t/a/0.txt")  # before the cursor: not seen by the next page
    resumed = body(get(auth_client, "/t", recursive="true", limit="100",
                       cursor=first["next_cursor"]))
    assert names(resumed["items"]) == tree[cut:]


def test_pages_go_on_after_a_directory_on_the_way_was_deleted(auth_client, tree, small):
    cut = tree.index("/t/a/deep/er") + 1
    first = body(get(auth_client, "/t", recursive="true", limit=str(cut)))
    assert auth_client.delete("/v1/files/t/a/deep/?recursive=true").status_code == 204
    resumed = body(get(auth_client, "/t", recursive="true", limit="100",
                       cursor=first["next_cursor"]))
    assert names(resumed["items"]) == [p for p in tree[cut:] if not p.startswith("/t/a/deep/")]


def test_a_limit_of_more_than_10000_or_less_than_1_is_400(auth_client, tree):
    for value in ("0", "-1", "10001", "x", "1.5"):
        assert_error(get(auth_client, "/t", limit=value), 400, "INVALID_REQUEST")
    assert body(get(auth_client, "/t", limit="10000"))["count"] == 9


def test_an_empty_cursor_is_the_first_page(auth_client, tree):
    assert names(body(get(auth_client, "/t", limit="2", cursor=""))["items"]) == tree[:2]


def test_a_cursor_without_limit_gives_the_rest(auth_client, tree):
    first = body(get(auth_client, "/t", recursive="true", limit="5"))
    rest = body(get(auth_client, "/t", recursive="true", cursor=first["next_cursor"]))
    assert names(rest["items"]) == tree[5:]
    assert "next_cursor" not in rest and rest["count"] == 17


# --- cursors cannot be forged or moved ---------------------------------------------------------


def first_cursor(client, path="/t", **query) -> str:
    return body(get(client, path, limit="2", **query))["next_cursor"]


@pytest.mark.parametrize("cursor", ["abc", "x" * 5000, "e30:AAAA", "ü"])
def test_a_garbled_cursor_is_400(auth_client, tree, cursor):
    assert_error(get(auth_client, "/t", limit="2", cursor=cursor), 400, "INVALID_REQUEST")


def test_a_tampered_cursor_is_400(auth_client, tree):
    cursor = first_cursor(auth_client, recursive="true")
    tampered = cursor[:-1] + ("A" if cursor[-1] != "A" else "B")
    assert_error(get(auth_client, "/t", recursive="true", limit="2", cursor=tampered), 400,
                 "INVALID_REQUEST")


@pytest.mark.parametrize("query", [
    {"recursive": "false"}, {"recursive": "true", "max_depth": "3"}, {"path": "/t/a"},
    {"path": "/"},
])
def test_a_cursor_belongs_to_its_listing(auth_client, tree, query):
    cursor = first_cursor(auth_client, recursive="true")
    query = dict(query)
    path = query.pop("path", "/t")
    query.setdefault("recursive", "true")
    assert_error(get(auth_client, path, limit="2", cursor=cursor, **query), 400,
                 "INVALID_REQUEST")


@pytest.mark.parametrize("after", ["../secret/x", "a/../../secret", "/secret", "a//b", "",
                                   "a/" * 1200 + "x"])
def test_a_signed_cursor_with_a_bad_position_is_400(auth_client, tree, after):
    """Even a cursor signed with the server's key (which only the server has) cannot leave the
    listed directory: each name of its position must be a plain name."""
    make(auth_client, "/secret/x")
    good = signing.loads(first_cursor(auth_client, recursive="true"),
                         salt=listing_api.CURSOR_SALT)
    forged = signing.dumps({**good, "after": after}, salt=listing_api.CURSOR_SALT,
                           compress=True)
    assert_error(get(auth_client, "/t", recursive="true", limit="2", cursor=forged), 400,
                 "INVALID_REQUEST")


@pytest.mark.parametrize("change", [{"after": 5}, {"type": "link"}, {"type": None},
                                    {"max_depth": "100"}])
def test_a_signed_cursor_with_other_fields_is_400(auth_client, tree, change):
    good = signing.loads(first_cursor(auth_client, recursive="true"),
                         salt=listing_api.CURSOR_SALT)
    forged = signing.dumps({**good, **change}, salt=listing_api.CURSOR_SALT)
    assert_error(get(auth_client, "/t", recursive="true", limit="2", cursor=forged), 400,
                 "INVALID_REQUEST")


# --- permissions on every page ---------------------------------------------------------------


def chmod(client, path: str, mode: str) -> None:
    response = client.patch(f"/v1/files/{path.lstrip('/')}", data=json.dumps({"mode": mode}),
                            content_type="application/json")
    assert response.status_code == 200, response.content


def test_a_later_page_skips_a_subtree_closed_meanwhile(auth_client, other_client, tree, small):
    cut = tree.index("/t/a/2.txt") + 1
    first = body(get(other_client, "/t", recursive="true", limit=str(cut)))
    assert names(first["items"]) == tree[:cut]
    chmod(auth_client, "/t/a", "0700")
    rest = body(get(other_client, "/t", recursive="true", cursor=first["next_cursor"]))
    assert names(rest["items"]) == [p for p in tree[cut:] if not p.startswith("/t/a/")]


def test_pages_skip_what_the_caller_may_not_enter(auth_client, other_client, tree, small):
    chmod(auth_client, "/t/c", "0700")
    chmod(auth_client, "/t/a/deep", "0711")  # x without r: not entered either
    complete = names(body(get(other_client, "/t", recursive="true"))["items"])
    assert "/t/c" in complete and "/t/a/deep" in complete
    assert not any(p.startswith(("/t/c/", "/t/a/deep/")) for p in complete)
    found = pages(other_client, "/t", 2, recursive="true")
    assert [p for page in found for p in page] == complete


def test_a_cursor_does_not_open_a_directory_without_x(auth_client, other_client, tree):
    """In a directory bob may read but not traverse, pages give names and types only, and a
    cursor naming an entry below it (signed, as only the server could) reaches nothing: in the
    listing's order that position lies past all of bob's entries."""
    chmod(auth_client, "/t", "0744")
    page = body(get(other_client, "/t", recursive="true", limit="3"))
    assert all(set(item) == {"name", "path", "type"} for item in page["items"])
    good = signing.loads(page["next_cursor"], salt=listing_api.CURSOR_SALT)
    forged = signing.dumps({**good, "after": "a/1.txt", "type": "file"},
                           salt=listing_api.CURSOR_SALT, compress=True)
    resumed = body(get(other_client, "/t", recursive="true", limit="100", cursor=forged))
    assert resumed["items"] == []


def test_pages_need_read_on_the_directory(auth_client, other_client, tree):
    chmod(auth_client, "/t", "0711")
    cursor = first_cursor(auth_client)
    assert_error(get(other_client, "/t", limit="2", cursor=cursor), 403, "PERMISSION_DENIED")

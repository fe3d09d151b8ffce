"""What a caller learns about entries they may not read (issue 20, API.md §16.2 and §16.5).

Content digests (ETag, X-CallFS-SHA256) and every comparison against them belong to readers:
alice's 0600 /pin.txt holds `pin=4321`, and its sha256 would give the pin to anyone trying the
10,000 candidates. A directory bob may read but not traverse shows him its entries' names and
types, not their metadata, which a HEAD of each would refuse him.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from tests.helpers import assert_error, body_of, stored_blobs, upload

SECRET = b"pin=4321"
RIGHT = f'"{hashlib.sha256(SECRET).hexdigest()}"'
WRONG = f'"{hashlib.sha256(b"pin=0000").hexdigest()}"'
PAST = "Sat, 01 Jan 2000 00:00:00 GMT"
FUTURE = "Fri, 01 Jan 2100 00:00:00 GMT"
DIGEST_HEADERS = ("ETag", "X-CallFS-SHA256")
FILE_INFO_KEYS = {"name", "path", "type", "size", "mode", "owner", "group", "mtime"}
NAMES_ONLY_KEYS = {"name", "path", "type"}


def url(path: str) -> str:
    return f"/v1/files/{path.lstrip('/')}"


def make(client, path: str, data: bytes = b"x") -> None:
    response = upload(client, path, data)
    assert response.status_code == 201, (path, response.status_code, response.content[:200])


def patch(client, path: str, body: dict, **extra):
    return client.patch(url(path), data=json.dumps(body), content_type="application/json",
                        **extra)


def chmod(client, path: str, mode: str) -> None:
    response = patch(client, path, {"mode": mode})
    assert response.status_code == 200, (path, response.status_code, response.content[:200])


def content(client, path: str) -> bytes:
    response = client.get(url(path))
    assert response.status_code == 200, (path, response.status_code)
    return body_of(response)


def forbidden(response) -> None:
    if response.request["REQUEST_METHOD"] == "HEAD":
        assert response.status_code == 403, response.status_code
    else:
        assert_error(response, 403, "PERMISSION_DENIED")


@pytest.fixture
def alice(make_user, client_for):
    return client_for(make_user("alice", groups=["team"])[1])


@pytest.fixture
def bob(make_user, client_for):
    return client_for(make_user("bob")[1])


@pytest.fixture
def sue(make_user, client_for):
    return client_for(make_user("sue", superuser=True)[1])


@pytest.fixture
def pin(alice, bob):
    """alice's /pin.txt, mode 0600: bob may stat it (x on /) but not read it."""
    make(alice, "/pin.txt", SECRET)
    chmod(alice, "/pin.txt", "0600")
    return "/pin.txt"


# --- 3. digests only for readers -------------------------------------------------------------

def test_head_hides_the_digest_from_a_caller_who_may_not_read(pin, bob):
    response = bob.head(url(pin))
    assert response.status_code == 200
    for header in DIGEST_HEADERS:
        assert header not in response, header
    # What stat gives stays: size, mode, owner, mtime, Last-Modified.
    assert (response["X-CallFS-Size"], response["X-CallFS-Mode"], response["X-CallFS-Owner"]) \
        == (str(len(SECRET)), "0600", "alice")
    assert "Last-Modified" in response


@pytest.mark.parametrize("method", ["get", "head"])
def test_readers_still_get_the_digest(pin, alice, sue, method):
    for client in (alice, sue):
        response = getattr(client, method)(url(pin))
        assert response.status_code == 200
        assert response["ETag"] == RIGHT
        assert response["X-CallFS-SHA256"] == RIGHT.strip('"')


def test_a_group_reader_gets_the_digest(alice, make_user, client_for):
    make(alice, "/team.txt", SECRET)
    assert patch(alice, "/team.txt", {"group": "team", "mode": "0640"}).status_code == 200
    mate = client_for(make_user("mate", groups=["team"])[1])
    assert mate.head(url("/team.txt"))["ETag"] == RIGHT


@pytest.mark.parametrize("headers", [
    {"HTTP_IF_NONE_MATCH": RIGHT}, {"HTTP_IF_NONE_MATCH": WRONG}, {"HTTP_IF_NONE_MATCH": "*"},
    {"HTTP_IF_MATCH": RIGHT}, {"HTTP_IF_MATCH": WRONG},
    {"HTTP_IF_MODIFIED_SINCE": FUTURE}, {"HTTP_IF_UNMODIFIED_SINCE": PAST},
    {"HTTP_RANGE": "bytes=0-3"}, {"HTTP_RANGE": "bytes=100-"},
    {"HTTP_RANGE": "bytes=0-3", "HTTP_IF_RANGE": RIGHT},
], ids=lambda headers: ",".join(f"{k[5:]}={v[:8]}" for k, v in headers.items()))
def test_get_checks_read_before_conditionals_and_range(pin, bob, headers):
    # 304, 412 or 416 here would tell a right guess (or the size test) from a wrong one.
    forbidden(bob.get(url(pin), **headers))


@pytest.mark.parametrize("header", ["HTTP_IF_NONE_MATCH", "HTTP_IF_MATCH"])
def test_head_answers_a_tag_comparison_alike_for_any_guess(pin, bob, header):
    # Before the fix: If-None-Match gave 304 for the right guess and 200 for a wrong one.
    forbidden(bob.head(url(pin), **{header: RIGHT}))
    forbidden(bob.head(url(pin), **{header: WRONG}))


def test_head_date_validators_stay_open_to_a_caller_who_may_stat(pin, bob):
    # mtime is metadata (X-CallFS-MTime, Last-Modified): comparing dates reveals nothing more.
    assert bob.head(url(pin), HTTP_IF_MODIFIED_SINCE=FUTURE).status_code == 304
    assert bob.head(url(pin), HTTP_IF_MODIFIED_SINCE=PAST).status_code == 200
    assert bob.head(url(pin), HTTP_IF_NONE_MATCH="*").status_code == 304  # it exists


def test_reader_conditionals_still_work(pin, alice):
    assert alice.get(url(pin), HTTP_IF_NONE_MATCH=RIGHT).status_code == 304
    assert alice.head(url(pin), HTTP_IF_NONE_MATCH=RIGHT).status_code == 304
    assert alice.get(url(pin), HTTP_IF_NONE_MATCH=WRONG).status_code == 200
    assert_error(alice.get(url(pin), HTTP_IF_MATCH=WRONG), 412, "PRECONDITION_FAILED")
    assert alice.get(url(pin), HTTP_RANGE="bytes=0-3", HTTP_IF_RANGE=RIGHT).status_code == 206


# --- writes: a tag comparison is a read ------------------------------------------------------

@pytest.fixture
def drop(alice, bob):
    """alice's /drop.txt, mode 0602: bob may overwrite it but not read it."""
    make(alice, "/drop.txt", SECRET)
    chmod(alice, "/drop.txt", "0602")
    return "/drop.txt"


@pytest.mark.parametrize("size", [len(SECRET), 100 * 1024])  # stored first / checked first
@pytest.mark.parametrize("header", ["HTTP_IF_MATCH", "HTTP_IF_NONE_MATCH"])
def test_a_writer_who_may_not_read_cannot_compare_tags(drop, alice, bob, storage_root, header,
                                                        size):
    # Before the fix: If-Match gave 412 for a wrong guess and 200 for the right one (which,
    # rewriting the same bytes, even left the file unchanged): a full oracle on the content.
    before = stored_blobs(storage_root)
    body = SECRET.ljust(size, b" ")
    for tag in (WRONG, RIGHT):
        forbidden(upload(bob, drop, body, method="put", **{header: tag}))
    assert content(alice, drop) == SECRET
    assert stored_blobs(storage_root) == before


def test_a_writer_who_may_not_read_still_writes(drop, alice, bob):
    assert upload(bob, drop, b"mine", method="put").status_code == 200
    assert upload(bob, drop, b"again", method="put", HTTP_IF_MATCH="*").status_code == 200
    assert_error(upload(bob, drop, b"no", method="put", HTTP_IF_NONE_MATCH="*"), 412,
                 "PRECONDITION_FAILED")
    assert upload(bob, drop, b"dated", method="put",
                  HTTP_IF_UNMODIFIED_SINCE=FUTURE).status_code == 200
    assert content(alice, drop) == b"dated"


def test_a_copy_onto_an_unreadable_file_cannot_compare_tags(drop, alice, bob):
    make(bob, "/bobs.txt", SECRET)
    for tag in (WRONG, RIGHT):
        forbidden(upload(bob, drop, b"", method="put", HTTP_X_CALLFS_COPY_SOURCE="/bobs.txt",
                         HTTP_IF_MATCH=tag))


@pytest.mark.parametrize("attempt", [
    lambda client, path, **h: client.delete(url(path), **h),
    lambda client, path, **h: patch(client, path, {"name": "moved.txt"}, **h),
    lambda client, path, **h: patch(client, path, {"mode": "0644"}, **h),
], ids=["delete", "rename", "chmod"])
def test_other_writes_answer_alike_for_any_guess(pin, alice, bob, attempt):
    # The services weigh preconditions before their own permission checks: before the fix a
    # wrong guess gave 412 and the right one 403.
    for tag in (WRONG, RIGHT):
        forbidden(attempt(bob, pin, HTTP_IF_MATCH=tag))
    assert content(alice, pin) == SECRET


def test_a_renamer_who_may_not_read_cannot_compare_tags(alice, bob):
    # bob may rename alice's file in his own (non-sticky) directory, but not read it.
    make(bob, "/bobdir/")
    chmod(bob, "/bobdir", "0777")
    make(alice, "/bobdir/pin.txt", SECRET)
    chmod(alice, "/bobdir/pin.txt", "0600")
    for tag in (WRONG, RIGHT):
        forbidden(patch(bob, "/bobdir/pin.txt", {"name": "p.txt"}, HTTP_IF_MATCH=tag))
    assert patch(bob, "/bobdir/pin.txt", {"name": "p.txt"}).status_code == 200


def test_listings_carry_no_digest(pin, alice):
    for response in (alice.get(url("/")), alice.get("/v1/directories/", {"recursive": "true"})):
        body = json.loads(response.content)
        items = body if isinstance(body, list) else body["items"]
        assert items and all(set(item) <= FILE_INFO_KEYS for item in items)


# --- 9. a directory with r but without x -----------------------------------------------------

@pytest.fixture
def noexec(alice):
    """alice's /noexec, mode 0744 ("other" may read it, not traverse it)."""
    make(alice, "/noexec/")
    make(alice, "/noexec/s.txt", b"12345")
    make(alice, "/noexec/sub/inner.txt")
    chmod(alice, "/noexec", "0744")
    return "/noexec"


EXPECTED_NAMES = [{"name": "s.txt", "path": "/noexec/s.txt", "type": "file"},
                  {"name": "sub", "path": "/noexec/sub", "type": "directory"}]


@pytest.mark.parametrize("request_", [
    lambda client: client.get("/v1/directories/noexec"),
    lambda client: client.get("/v1/directories/noexec", {"recursive": "true"}),
    lambda client: client.get("/v1/directories/noexec/", {"recursive": "true", "max_depth": 0}),
    lambda client: client.get(url("/noexec")),
    lambda client: client.get(url("/noexec/")),
], ids=["directories", "recursive", "unlimited", "files", "files-slash"])
def test_r_without_x_lists_names_and_types_only(noexec, bob, request_):
    response = request_(bob)
    assert response.status_code == 200
    body = json.loads(response.content)
    items = body if isinstance(body, list) else body["items"]
    assert items == EXPECTED_NAMES
    # ... which is all a HEAD of each would give bob: nothing.
    forbidden(bob.head(url("/noexec/s.txt")))


def test_the_directory_itself_is_still_described(noexec, bob):
    # The listed directory's own metadata needs x on / only (as `ls -ld`).
    response = bob.get(url("/noexec"))
    assert (response["X-CallFS-Mode"], response["X-CallFS-Owner"]) == ("0744", "alice")


def test_the_owner_sees_full_entries(noexec, alice):
    items = json.loads(alice.get("/v1/directories/noexec").content)["items"]
    assert [set(item) for item in items] == [FILE_INFO_KEYS, FILE_INFO_KEYS]
    assert items[0]["size"] == 5


def test_inside_a_recursive_listing_r_without_x_is_not_entered(noexec, alice, bob):
    # /noexec's own entry is listed in full (x on / lets bob stat it); what lies below it is
    # left out, as for any directory bob cannot both read and traverse.
    items = json.loads(bob.get("/v1/directories/", {"recursive": "true"}).content)["items"]
    entry = next(item for item in items if item["path"] == "/noexec")
    assert set(entry) == FILE_INFO_KEYS and entry["mode"] == "0744"
    assert not any(item["path"].startswith("/noexec/") for item in items)


def test_x_without_r_on_the_listed_directory_is_still_403(alice, bob):
    make(alice, "/blind/")
    make(alice, "/blind/known.txt")
    chmod(alice, "/blind", "0711")
    forbidden(bob.get("/v1/directories/blind"))
    forbidden(bob.get(url("/blind")))

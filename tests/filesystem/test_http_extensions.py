"""HTTP extensions of API.md §16.3: Range, validators, conditional requests, checksums and the
upload size cap."""

import dataclasses
import hashlib
import json
from datetime import datetime

import pytest
from django.utils.http import http_date, parse_http_date

from filesystem.api.views import SMALL_DOWNLOAD
from filesystem.models import Inode
from tests.helpers import assert_error, body_of, stored_blobs, upload

DATA = b"0123456789"
SHA = hashlib.sha256(DATA).hexdigest()
ETAG = f'"{SHA}"'
OLD_DATE = "Sat, 01 Jan 2000 00:00:00 GMT"
FUTURE_DATE = "Fri, 01 Jan 2100 00:00:00 GMT"


@pytest.fixture
def ten(auth_client):
    """/ten.bin holding the ten bytes 0-9."""
    assert upload(auth_client, "/ten.bin", DATA).status_code == 201
    return "/v1/files/ten.bin"


def stored(client, url: str) -> bytes:
    response = client.get(url)
    assert response.status_code == 200
    return body_of(response)


# --- Range -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("range_header", "body", "content_range"),
    [
        ("bytes=0-3", b"0123", "bytes 0-3/10"),
        ("bytes=0-0", b"0", "bytes 0-0/10"),
        ("bytes=9-9", b"9", "bytes 9-9/10"),
        ("bytes=2-", b"23456789", "bytes 2-9/10"),
        ("bytes=0-", DATA, "bytes 0-9/10"),
        ("bytes=-3", b"789", "bytes 7-9/10"),
        ("bytes=-10", DATA, "bytes 0-9/10"),
        ("bytes=-25", DATA, "bytes 0-9/10"),
        ("bytes=5-100", b"56789", "bytes 5-9/10"),
    ],
)
def test_single_range_is_206(auth_client, ten, range_header, body, content_range):
    response = auth_client.get(ten, HTTP_RANGE=range_header)
    assert response.status_code == 206
    assert body_of(response) == body
    assert response["Content-Range"] == content_range
    assert response["Content-Length"] == str(len(body))
    assert response["Content-Type"] == "application/octet-stream"
    assert response["X-CallFS-Size"] == "10"  # the file's size, not the part's
    assert response["ETag"] == ETAG


@pytest.mark.parametrize("range_header", ["bytes=10-", "bytes=10-20", "bytes=50-60", "bytes=-0"])
def test_unsatisfiable_range_is_416(auth_client, ten, range_header):
    response = auth_client.get(ten, HTTP_RANGE=range_header)
    assert response.status_code == 416
    assert_error(response, 416, "RANGE_NOT_SATISFIABLE")
    assert response["Content-Range"] == "bytes */10"


def test_range_on_an_empty_file_is_416(auth_client):
    assert upload(auth_client, "/empty", b"").status_code == 201
    response = auth_client.get("/v1/files/empty", HTTP_RANGE="bytes=0-")
    assert response.status_code == 416
    assert_error(response, 416, "RANGE_NOT_SATISFIABLE")
    assert response["Content-Range"] == "bytes */0"


@pytest.mark.parametrize("range_header", ["bytes=0-1,4-5", "bytes=0-1, 8-"])
def test_multi_range_gets_the_whole_file(auth_client, ten, range_header):
    response = auth_client.get(ten, HTTP_RANGE=range_header)
    assert response.status_code == 200
    assert body_of(response) == DATA
    assert not response.has_header("Content-Range")


@pytest.mark.parametrize("range_header", ["items=0-3", "bytes=abc", "bytes=5-2", "bytes=3"])
def test_malformed_range_is_ignored(auth_client, ten, range_header):
    response = auth_client.get(ten, HTTP_RANGE=range_header)
    assert response.status_code == 200
    assert body_of(response) == DATA


@pytest.mark.parametrize("method", ["get", "head"])
def test_accept_ranges_on_files(auth_client, ten, method):
    response = getattr(auth_client, method)(ten)
    assert response["Accept-Ranges"] == "bytes"


def test_range_is_ignored_on_directories(auth_client, ten):
    response = auth_client.get("/v1/files/", HTTP_RANGE="bytes=0-1")
    assert response.status_code == 200
    assert [i["name"] for i in json.loads(response.content)] == ["ten.bin"]


# --- validators ------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["get", "head"])
def test_etag_checksum_and_last_modified(auth_client, ten, method):
    response = getattr(auth_client, method)(ten)
    assert response.status_code == 200
    assert response["ETag"] == ETAG
    assert response["X-CallFS-SHA256"] == SHA
    mtime = response["X-CallFS-MTime"]  # 2026-07-31T12:00:05Z
    assert parse_http_date(response["Last-Modified"]) == parse_http_date(
        http_date(datetime.fromisoformat(mtime).timestamp()))


def test_etag_changes_with_the_content(auth_client, ten):
    assert upload(auth_client, "/ten.bin", b"other", method="put").status_code == 200
    response = auth_client.head(ten)
    assert response["ETag"] == f'"{hashlib.sha256(b"other").hexdigest()}"'
    assert response["X-CallFS-SHA256"] == hashlib.sha256(b"other").hexdigest()


def test_directories_have_no_etag(auth_client, ten):
    response = auth_client.head("/v1/files/")
    assert not response.has_header("ETag")
    assert not response.has_header("X-CallFS-SHA256")


@pytest.mark.parametrize("method", ["get", "head"])
@pytest.mark.parametrize("tag", [ETAG, f"W/{ETAG}", "*", f'"nope", {ETAG}'])
def test_if_none_match_is_304(auth_client, ten, method, tag):
    response = getattr(auth_client, method)(ten, HTTP_IF_NONE_MATCH=tag)
    assert response.status_code == 304
    assert body_of(response) == b""
    assert response["ETag"] == ETAG


@pytest.mark.parametrize("tag", ['"deadbeef"', f'"{"0" * 64}"'])
def test_if_none_match_mismatch_is_200(auth_client, ten, tag):
    response = auth_client.get(ten, HTTP_IF_NONE_MATCH=tag)
    assert response.status_code == 200
    assert body_of(response) == DATA


def test_if_modified_since(auth_client, ten):
    last_modified = auth_client.head(ten)["Last-Modified"]
    for since in (last_modified, FUTURE_DATE):
        response = auth_client.get(ten, HTTP_IF_MODIFIED_SINCE=since)
        assert response.status_code == 304
        assert body_of(response) == b""
    response = auth_client.get(ten, HTTP_IF_MODIFIED_SINCE=OLD_DATE)
    assert response.status_code == 200
    assert body_of(response) == DATA


def test_if_none_match_wins_over_if_modified_since(auth_client, ten):
    response = auth_client.get(ten, HTTP_IF_NONE_MATCH='"other"',
                               HTTP_IF_MODIFIED_SINCE=FUTURE_DATE)
    assert response.status_code == 200
    assert body_of(response) == DATA


# --- If-Range --------------------------------------------------------------------------------


def test_if_range_matching_etag_gives_the_range(auth_client, ten):
    response = auth_client.get(ten, HTTP_RANGE="bytes=0-1", HTTP_IF_RANGE=ETAG)
    assert response.status_code == 206
    assert body_of(response) == b"01"


@pytest.mark.parametrize("if_range", ['"stale"', OLD_DATE])
def test_if_range_mismatch_gives_the_whole_file(auth_client, ten, if_range):
    response = auth_client.get(ten, HTTP_RANGE="bytes=0-1", HTTP_IF_RANGE=if_range)
    assert response.status_code == 200
    assert body_of(response) == DATA
    assert not response.has_header("Content-Range")


def test_if_range_current_date_gives_the_range(auth_client, ten):
    last_modified = auth_client.head(ten)["Last-Modified"]
    response = auth_client.get(ten, HTTP_RANGE="bytes=8-", HTTP_IF_RANGE=last_modified)
    assert response.status_code == 206
    assert body_of(response) == b"89"


# --- conditional writes ----------------------------------------------------------------------


def test_put_if_match_stale_is_412_and_changes_nothing(auth_client, ten):
    response = upload(auth_client, "/ten.bin", b"new", method="put", HTTP_IF_MATCH='"stale"')
    assert_error(response, 412, "PRECONDITION_FAILED")
    assert stored(auth_client, ten) == DATA


def test_put_if_match_current_overwrites(auth_client, ten):
    response = upload(auth_client, "/ten.bin", b"new", method="put", HTTP_IF_MATCH=ETAG)
    assert response.status_code == 200
    assert stored(auth_client, ten) == b"new"
    # The old tag is now stale.
    response = upload(auth_client, "/ten.bin", b"newer", method="put", HTTP_IF_MATCH=ETAG)
    assert_error(response, 412, "PRECONDITION_FAILED")
    assert stored(auth_client, ten) == b"new"


def test_put_if_match_on_a_missing_file_is_412(auth_client):
    response = upload(auth_client, "/absent.bin", b"x", method="put", HTTP_IF_MATCH=ETAG)
    assert_error(response, 412, "PRECONDITION_FAILED")
    assert_error(auth_client.get("/v1/files/absent.bin"), 404, "FILE_NOT_FOUND")


def test_put_if_none_match_star(auth_client, ten, storage_root):
    before = stored_blobs(storage_root)
    response = upload(auth_client, "/ten.bin", b"new", method="put", HTTP_IF_NONE_MATCH="*")
    assert_error(response, 412, "PRECONDITION_FAILED")
    assert stored(auth_client, ten) == DATA
    assert stored_blobs(storage_root) == before
    created = upload(auth_client, "/fresh.bin", b"f", method="put", HTTP_IF_NONE_MATCH="*")
    assert created.status_code == 201
    assert stored(auth_client, "/v1/files/fresh.bin") == b"f"


def test_delete_if_match(auth_client, ten):
    assert_error(auth_client.delete(ten, HTTP_IF_MATCH='"stale"'), 412, "PRECONDITION_FAILED")
    assert stored(auth_client, ten) == DATA
    assert auth_client.delete(ten, HTTP_IF_MATCH=ETAG).status_code == 204
    assert_error(auth_client.get(ten), 404, "FILE_NOT_FOUND")


def test_patch_if_match(auth_client, ten):
    def move(tag):
        return auth_client.patch(ten, data=json.dumps({"name": "moved.bin"}),
                                 content_type="application/json", HTTP_IF_MATCH=tag)

    assert_error(move('"stale"'), 412, "PRECONDITION_FAILED")
    assert stored(auth_client, ten) == DATA
    assert_error(auth_client.get("/v1/files/moved.bin"), 404, "FILE_NOT_FOUND")
    response = move(ETAG)
    assert response.status_code == 200
    assert json.loads(response.content) == {"path": "/moved.bin"}
    assert stored(auth_client, "/v1/files/moved.bin") == DATA


# --- X-CallFS-SHA256 on upload ----------------------------------------------------------------


@pytest.mark.parametrize("method", ["post", "put"])
def test_matching_checksum_is_accepted(auth_client, method):
    response = upload(auth_client, "/sum.bin", DATA, method=method, HTTP_X_CALLFS_SHA256=SHA)
    assert response.status_code == 201
    assert stored(auth_client, "/v1/files/sum.bin") == DATA
    upper = upload(auth_client, "/sum.bin", DATA, method="put",
                   HTTP_X_CALLFS_SHA256=SHA.upper())
    assert upper.status_code == 200


@pytest.mark.parametrize("method", ["post", "put"])
def test_wrong_checksum_stores_nothing(auth_client, storage_root, method):
    wrong = hashlib.sha256(b"something else").hexdigest()
    response = upload(auth_client, "/bad/sum.bin", DATA, method=method,
                      HTTP_X_CALLFS_SHA256=wrong)
    assert_error(response, 400, "CHECKSUM_MISMATCH")
    assert_error(auth_client.get("/v1/files/bad/sum.bin"), 404, "FILE_NOT_FOUND")
    assert stored_blobs(storage_root) == set()
    assert json.loads(auth_client.get("/v1/files/").content) == []


def test_wrong_checksum_on_overwrite_keeps_the_old_content(auth_client, ten, storage_root):
    before = stored_blobs(storage_root)
    assert len(before) == 1
    response = upload(auth_client, "/ten.bin", b"new bytes", method="put",
                      HTTP_X_CALLFS_SHA256="0" * 64)
    assert_error(response, 400, "CHECKSUM_MISMATCH")
    assert stored(auth_client, ten) == DATA
    assert auth_client.head(ten)["ETag"] == ETAG
    assert stored_blobs(storage_root) == before


# --- upload size cap -------------------------------------------------------------------------


@pytest.fixture
def small_cap(settings):
    settings.CALLFS = dataclasses.replace(settings.CALLFS, max_upload_bytes=10)


@pytest.mark.parametrize("method", ["post", "put"])
def test_upload_over_the_cap_is_413(auth_client, small_cap, storage_root, method):
    response = upload(auth_client, "/big.bin", b"x" * 11, method=method)
    assert_error(response, 413, "PAYLOAD_TOO_LARGE")
    assert_error(auth_client.get("/v1/files/big.bin"), 404, "FILE_NOT_FOUND")
    assert stored_blobs(storage_root) == set()


def test_upload_at_the_cap_is_accepted(auth_client, small_cap):
    assert upload(auth_client, "/fits.bin", b"x" * 10).status_code == 201
    assert_error(upload(auth_client, "/fits.bin", b"y" * 11, method="put"), 413,
                 "PAYLOAD_TOO_LARGE")
    assert stored(auth_client, "/v1/files/fits.bin") == b"x" * 10


# --- small downloads are read at once, larger ones stream ---------------------------------------

@pytest.mark.parametrize("size", [SMALL_DOWNLOAD - 1, SMALL_DOWNLOAD, SMALL_DOWNLOAD + 1,
                                  3 * SMALL_DOWNLOAD])
def test_downloads_either_side_of_the_small_size_are_exact(auth_client, size):
    data = bytes(range(256)) * (size // 256) + b"z" * (size % 256)
    upload(auth_client, "/sized.bin", data, method="put")
    whole = auth_client.get("/v1/files/sized.bin")
    assert whole.status_code == 200
    assert whole.streaming is (size > SMALL_DOWNLOAD)
    assert body_of(whole) == data
    assert whole["Content-Length"] == str(size)
    tail = auth_client.get("/v1/files/sized.bin", HTTP_RANGE="bytes=-1000")
    assert tail.status_code == 206
    assert body_of(tail) == data[-1000:]
    assert tail["Content-Range"] == f"bytes {size - 1000}-{size - 1}/{size}"


def test_a_truncated_blob_is_an_error_not_a_short_body(auth_client, storage_root):
    upload(auth_client, "/cut.bin", b"x" * 1000, method="put")
    inode = Inode.objects.get(path="/cut.bin")
    blob = next(storage_root.rglob(inode.blob_key))
    blob.write_bytes(b"x" * 10)  # damaged behind CallFS's back
    auth_client.raise_request_exception = False
    response = auth_client.get("/v1/files/cut.bin")
    assert_error(response, 500, "INTERNAL_ERROR")

"""Small uploads (Content-Length up to SMALL_UPLOAD) are stored first and checked once, under
the lock (filesystem.services.create): the same answers as the long way, one lookup fewer, and
nothing left behind when they are refused."""

from __future__ import annotations

import hashlib
import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from filesystem.models import Inode
from filesystem.services.create import SMALL_UPLOAD
from tests.helpers import assert_error, body_of, stored_blobs, upload

SMALL = b"s" * 4096
LARGE = b"L" * (SMALL_UPLOAD + 1)


def inode_lookups(client, path: str, data: bytes, method: str = "put") -> tuple[int, int]:
    """(status, SELECTs of inodes) of one upload."""
    with CaptureQueriesContext(connection) as queries:
        response = upload(client, path, data, method=method)
    selects = [q["sql"] for q in queries.captured_queries
               if q["sql"].startswith("SELECT") and "filesystem_inode i" in q["sql"]]
    return response.status_code, len(selects)


@pytest.mark.fastpaths  # counts the row cache's queries
@pytest.mark.parametrize("method", ["post", "put"])
def test_a_small_upload_is_looked_up_once_on_sqlite(auth_client, method):
    assert upload(auth_client, "/d/seed.txt", b"x").status_code == 201
    small = inode_lookups(auth_client, "/d/small.bin", SMALL, method)
    large = inode_lookups(auth_client, "/d/large.bin", LARGE, method)
    if connection.vendor == "sqlite":  # BEGIN locks the database: the walk is the only query
        assert (small, large) == ((201, 1), (201, 2))
    else:  # row locks: under the lock the walk, the entry's lock and the parent's; a large
        # upload walks once more before it reads the body
        assert (small, large) == ((201, 3), (201, 4))
    assert body_of(auth_client.get("/v1/files/d/small.bin")) == SMALL
    assert body_of(auth_client.get("/v1/files/d/large.bin")) == LARGE


@pytest.fixture
def private_dir(auth_client):
    """/private/ (alice's, 0700) holding a file and /private/sub/ (0777), and alice's /open.txt
    (0644)."""
    assert upload(auth_client, "/private/secret.txt", b"secret").status_code == 201
    assert upload(auth_client, "/private/sub/").status_code == 201
    assert upload(auth_client, "/open.txt", b"open").status_code == 201
    for path, mode in (("private/sub", "0777"), ("private", "0700")):
        response = auth_client.patch(f"/v1/files/{path}", data=json.dumps({"mode": mode}),
                                     content_type="application/json")
        assert response.status_code == 200, response.content


@pytest.mark.parametrize("data", [SMALL, LARGE], ids=["small", "large"])
@pytest.mark.parametrize(("method", "path", "status", "code"), [
    ("put", "/private/new.txt", 403, "PERMISSION_DENIED"),  # no x on /private
    ("put", "/private/sub/new.txt", 403, "PERMISSION_DENIED"),  # sub is 0777, but no x above
    ("put", "/private/secret.txt", 403, "PERMISSION_DENIED"),
    ("put", "/open.txt", 403, "PERMISSION_DENIED"),  # no w on the file
    ("post", "/open.txt", 409, "FILE_ALREADY_EXISTS"),  # / is open to all (1777)
    ("post", "/private/secret.txt", 403, "PERMISSION_DENIED"),
])
def test_refused_uploads_store_nothing(private_dir, other_client, storage_root, data, method,
                                       path, status, code):
    before = stored_blobs(storage_root)
    assert_error(upload(other_client, path, data, method=method), status, code)
    # A wrong checksum changes nothing: what is refused is refused first, the long way or not.
    wrong = hashlib.sha256(b"other").hexdigest()
    assert_error(upload(other_client, path, data, method=method, HTTP_X_CALLFS_SHA256=wrong),
                 status, code)
    assert stored_blobs(storage_root) == before


@pytest.mark.parametrize("data", [SMALL, LARGE], ids=["small", "large"])
def test_conflicts_and_stale_validators_store_nothing(auth_client, storage_root, data):
    assert upload(auth_client, "/f.txt", b"first").status_code == 201
    assert upload(auth_client, "/dir/inner.txt", b"inner").status_code == 201
    before = stored_blobs(storage_root)
    assert_error(upload(auth_client, "/f.txt", data), 409, "FILE_ALREADY_EXISTS")
    assert_error(upload(auth_client, "/dir", data, method="put"), 400)
    assert_error(upload(auth_client, "/f.txt/below", data, method="put"), 400)
    stale = upload(auth_client, "/f.txt", data, method="put", HTTP_IF_MATCH='"' + "0" * 64 + '"')
    assert_error(stale, 412, "PRECONDITION_FAILED")
    absent = upload(auth_client, "/g.txt", data, method="put", HTTP_IF_MATCH="*")
    assert_error(absent, 412, "PRECONDITION_FAILED")
    assert stored_blobs(storage_root) == before
    assert body_of(auth_client.get("/v1/files/f.txt")) == b"first"
    assert not Inode.objects.filter(path="/g.txt").exists()


def test_a_small_upload_still_creates_missing_parents(auth_client):
    assert upload(auth_client, "/a/b/c/new.txt", SMALL, method="put").status_code == 201
    assert Inode.objects.get(path="/a/b").is_dir
    assert body_of(auth_client.get("/v1/files/a/b/c/new.txt")) == SMALL

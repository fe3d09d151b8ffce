"""The S3 backend against a real S3-compatible server (SeaweedFS, started by `make test`)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tracemalloc
import uuid

import pytest

from filesystem.models import Inode
from filesystem.storage import BackendUnavailable, ChecksumMismatchError, get_backend
from filesystem.storage.s3 import PART_SIZE, S3Backend
from tests.helpers import assert_error, body_of, stored_blobs, upload

pytestmark = pytest.mark.s3_live

MIB = 1024 * 1024


@pytest.fixture
def s3(settings):
    """S3 configured from CALLFS_S3_* (exported by scripts/services.sh); skipped without it,
    which `make test` turns into a failure."""
    if not os.environ.get("CALLFS_S3_BUCKET"):
        pytest.skip("no S3 server: set CALLFS_S3_* (make test starts SeaweedFS)")
    settings.CALLFS = dataclasses.replace(
        settings.CALLFS,
        s3_bucket=os.environ["CALLFS_S3_BUCKET"],
        s3_endpoint_url=os.environ.get("CALLFS_S3_ENDPOINT_URL"),
        s3_region=os.environ.get("CALLFS_S3_REGION"),
        s3_access_key=os.environ.get("CALLFS_S3_ACCESS_KEY"),
        s3_secret_key=os.environ.get("CALLFS_S3_SECRET_KEY"),
    )
    backend = get_backend("s3")
    assert isinstance(backend, S3Backend)
    return backend


@pytest.fixture
def s3_default(s3, settings):
    """New files go to S3."""
    settings.CALLFS = dataclasses.replace(settings.CALLFS, default_backend="s3")
    return s3


def pseudo_random(total: int, seed: bytes = b"seed"):
    """Deterministic 1 MiB chunks without holding `total` bytes anywhere."""
    block = hashlib.sha256(seed).digest() * (MIB // 32)
    for index in range(total // MIB):
        yield index.to_bytes(4, "big") + block[4:]


def object_exists(backend: S3Backend, key: str) -> bool:
    try:
        backend.size(key)
    except FileNotFoundError:
        return False
    return True


def pending_uploads(backend: S3Backend, key: str) -> list:
    response = backend.client.list_multipart_uploads(Bucket=backend.bucket,
                                                     Prefix=backend._object(key))
    return response.get("Uploads", [])


# --- the backend itself -------------------------------------------------------------------------

def test_write_read_range_copy_delete(s3):
    key = s3.new_key()
    result = s3.write(key, [b"hello ", b"world"])
    assert (result.size, result.sha256) == (11, hashlib.sha256(b"hello world").hexdigest())
    with s3.open(key) as reader:
        assert reader.read() == b"hello world"
    with s3.open(key, 6, 3) as reader:
        assert reader.read() == b"wor"
    assert s3.read(key, 6, 3) == b"wor"  # the small-read path: the same bytes at once
    assert s3.read(key, 6, 100) == b"world"
    copy = s3.new_key()
    s3.copy(key, copy)
    assert s3.size(copy) == 11
    s3.delete(key)
    s3.delete(key)  # a missing key is fine
    assert not object_exists(s3, key)
    with pytest.raises(FileNotFoundError):
        s3.open(key)
    assert copy in set(s3.keys())
    s3.delete(copy)


def test_deployments_sharing_a_bucket_see_only_their_prefix(s3, settings):
    """CALLFS_S3_PREFIX: fsck of one deployment never takes another's objects for orphans."""
    settings.CALLFS = dataclasses.replace(settings.CALLFS, s3_prefix=f"other-{uuid.uuid4().hex}/")
    neighbour = get_backend("s3")
    theirs, ours = neighbour.new_key(), s3.new_key()
    neighbour.write(theirs, [b"theirs"])
    s3.write(ours, [b"ours"])
    assert s3.client.head_object(Bucket=s3.bucket, Key=f"{neighbour.prefix}blobs/{theirs}")
    assert (set(s3.keys()), set(neighbour.keys())) == ({ours}, {theirs})
    neighbour.delete(theirs)
    s3.delete(ours)


def test_empty_object(s3):
    key = s3.new_key()
    assert s3.write(key, []).size == 0
    with s3.open(key) as reader:
        assert reader.read() == b""
    s3.delete(key)


def test_multipart_write_failing_midway_is_aborted_and_leaves_nothing(s3):
    key = s3.new_key()

    def broken():
        yield from pseudo_random(PART_SIZE + 2 * MIB)
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        s3.write(key, broken())
    assert not object_exists(s3, key)
    assert pending_uploads(s3, key) == []


def test_checksum_mismatch_stores_nothing(s3):
    small, large = s3.new_key(), s3.new_key()
    with pytest.raises(ChecksumMismatchError):
        s3.write(small, [b"abc"], expected_sha256="0" * 64)
    with pytest.raises(ChecksumMismatchError):
        s3.write(large, pseudo_random(PART_SIZE + MIB), expected_sha256="0" * 64)
    assert not object_exists(s3, small)
    assert not object_exists(s3, large)
    assert pending_uploads(s3, large) == []


def test_50_mib_round_trip_in_bounded_memory(s3):
    key = s3.new_key()
    expected = hashlib.sha256()
    for chunk in pseudo_random(50 * MIB):
        expected.update(chunk)
    s3.check()  # the per-thread boto3 client is built on first use: not part of the transfer
    tracemalloc.start()
    try:
        result = s3.write(key, pseudo_random(50 * MIB))
        _, upload_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        digest = hashlib.sha256()
        with s3.open(key) as reader:
            for chunk in iter(lambda: reader.read(256 * 1024), b""):
                digest.update(chunk)
        _, download_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.sha256 == expected.hexdigest() == digest.hexdigest()
    assert result.size == 50 * MIB
    # One part in flight (8 MiB) plus its copy for the request, never the whole 50 MiB.
    assert upload_peak < 3 * PART_SIZE, upload_peak
    assert download_peak < 8 * MIB, download_peak
    s3.delete(key)


def test_wrong_credentials_are_reported_as_unavailable(s3, settings):
    settings.CALLFS = dataclasses.replace(settings.CALLFS, s3_secret_key="wrong-secret")
    with pytest.raises(BackendUnavailable):
        get_backend("s3").check()


# --- the API with S3 as the default backend -----------------------------------------------------

def test_api_file_lifecycle_on_s3(s3_default, auth_client, django_capture_on_commit_callbacks):
    assert upload(auth_client, "/s3/a.txt", b"on s3").status_code == 201
    inode = Inode.objects.get(path="/s3/a.txt")
    assert (inode.backend, inode.node_id) == ("s3", "")
    assert object_exists(s3_default, inode.blob_key)
    response = auth_client.get("/v1/files/s3/a.txt")
    assert body_of(response) == b"on s3"
    assert response["ETag"] == f'"{hashlib.sha256(b"on s3").hexdigest()}"'
    head = auth_client.head("/v1/files/s3/a.txt")
    assert "X-CallFS-Instance-ID" not in head  # any node can serve S3 files
    ranged = auth_client.get("/v1/files/s3/a.txt", HTTP_RANGE="bytes=3-4")
    assert (ranged.status_code, body_of(ranged)) == (206, b"s3")
    with django_capture_on_commit_callbacks(execute=True):
        assert upload(auth_client, "/s3/a.txt", b"replaced", method="put").status_code == 200
    assert not object_exists(s3_default, inode.blob_key)  # the old object went after commit
    assert body_of(auth_client.get("/v1/files/s3/a.txt")) == b"replaced"
    copy = auth_client.put("/v1/files/s3/b.txt", HTTP_X_CALLFS_COPY_SOURCE="/s3/a.txt")
    assert copy.status_code == 201
    assert body_of(auth_client.get("/v1/files/s3/b.txt")) == b"replaced"
    new_key = Inode.objects.get(path="/s3/a.txt").blob_key
    with django_capture_on_commit_callbacks(execute=True):
        assert auth_client.delete("/v1/files/s3/a.txt").status_code == 204
    assert not object_exists(s3_default, new_key)


def test_small_overwrite_keeps_an_s3_file_on_s3(s3_default, auth_client, settings,
                                                storage_root):
    """A small upload is stored at the default placement before its target is looked up; one
    that replaces a file living elsewhere is stored again where that file lives."""
    assert upload(auth_client, "/s3/kept.txt", b"on s3").status_code == 201
    settings.CALLFS = dataclasses.replace(settings.CALLFS, default_backend="localfs")
    assert upload(auth_client, "/s3/kept.txt", b"still on s3", method="put").status_code == 200
    inode = Inode.objects.get(path="/s3/kept.txt")
    assert (inode.backend, inode.node_id) == ("s3", "")
    assert object_exists(s3_default, inode.blob_key)
    assert body_of(auth_client.get("/v1/files/s3/kept.txt")) == b"still on s3"
    assert stored_blobs(storage_root) == set()  # the first, local copy went again


def test_api_checksum_mismatch_on_s3_stores_nothing(s3_default, auth_client):
    response = upload(auth_client, "/s3/bad.bin", b"payload", HTTP_X_CALLFS_SHA256="0" * 64)
    assert_error(response, 400, "CHECKSUM_MISMATCH")
    assert not Inode.objects.filter(path="/s3/bad.bin").exists()


def _patch(client, path, body):
    return client.patch(f"/v1/files/{path.lstrip('/')}", data=json.dumps(body),
                        content_type="application/json")


def test_move_local_to_s3_to_local_keeps_bytes_and_sha256(s3, auth_client, storage_root,
                                                          django_capture_on_commit_callbacks):
    data = os.urandom(3 * MIB + 17)
    assert upload(auth_client, "/tier/file.bin", data).status_code == 201
    local = Inode.objects.get(path="/tier/file.bin")
    assert local.backend == "localfs"

    with django_capture_on_commit_callbacks(execute=True):
        response = _patch(auth_client, "/tier/file.bin", {"destination": "/tier/cold.bin",
                                                           "backend": "s3"})
    assert response.status_code == 200, response.content
    cold = Inode.objects.get(path="/tier/cold.bin")
    assert (cold.backend, cold.sha256, cold.size) == ("s3", local.sha256, len(data))
    assert object_exists(s3, cold.blob_key)
    assert not list((storage_root / "blobs").rglob(local.blob_key))  # local bytes are gone
    assert body_of(auth_client.get("/v1/files/tier/cold.bin")) == data

    with django_capture_on_commit_callbacks(execute=True):
        response = _patch(auth_client, "/tier/cold.bin", {"destination": "/tier/cold.bin",
                                                           "backend": "localfs"})
    assert response.status_code == 200, response.content
    back = Inode.objects.get(path="/tier/cold.bin")
    assert (back.backend, back.sha256) == ("localfs", local.sha256)
    assert not object_exists(s3, cold.blob_key)
    assert body_of(auth_client.get("/v1/files/tier/cold.bin")) == data


def test_unknown_backend_and_directory_relocation_are_refused(s3, auth_client):
    upload(auth_client, "/tier2/f.txt", b"x")
    assert_error(_patch(auth_client, "/tier2/f.txt", {"destination": "/tier2/g.txt",
                                                       "backend": "tape"}), 400, "BAD_REQUEST")
    assert_error(_patch(auth_client, "/tier2", {"destination": "/tier3", "backend": "s3"}),
                 400, "BAD_REQUEST")


def test_copy_across_backends(s3, auth_client, settings):
    upload(auth_client, "/x/local.txt", b"cross-backend")
    settings.CALLFS = dataclasses.replace(settings.CALLFS, default_backend="s3")
    response = auth_client.post("/v1/files/x/remote.txt", HTTP_X_CALLFS_COPY_SOURCE="/x/local.txt")
    assert response.status_code == 201
    remote = Inode.objects.get(path="/x/remote.txt")
    assert remote.backend == "s3"
    assert body_of(auth_client.get("/v1/files/x/remote.txt")) == b"cross-backend"


def test_s3_outage_is_503_not_500(s3_default, auth_client, settings):
    settings.CALLFS = dataclasses.replace(settings.CALLFS,
                                          s3_endpoint_url="http://127.0.0.1:9")  # nothing there
    response = upload(auth_client, f"/down/{uuid.uuid4().hex}.txt", b"x")
    assert_error(response, 503, "SERVICE_UNAVAILABLE")

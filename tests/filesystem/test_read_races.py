"""A file overwritten (or deleted) between a reader's lookup and the open of its bytes (issue 21):
the overwrite deletes the old blob right after its commit, so the reader looks the path up again
and sends the new version whole, with headers, ranges and conditions weighed against it."""

from __future__ import annotations

import hashlib
import os

import pytest
from django.core.cache import cache
from django.test import Client
from rest_framework.test import APIClient

from filesystem import services
from filesystem.services.lookup import READ_ATTEMPTS
from filesystem.storage.local import LocalStorage
from filesystem.storage.s3 import S3Backend
from links import services as links
from links import throttling
from tests.filesystem.test_storage_s3 import s3, s3_default  # noqa: F401 - fixtures
from tests.helpers import assert_error, body_of, upload

OLD = os.urandom(300 * 1024)  # streamed when read whole (over views.SMALL_DOWNLOAD)
NEW = os.urandom(200 * 1024 + 17)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def between_lookup_and_open(monkeypatch, django_capture_on_commit_callbacks):
    """between_lookup_and_open(action, times=1, backend=LocalStorage) runs `action()` just
    before each of the next `times` opens, reads or copies of a blob in `backend`, i.e. after the
    request looked its file up; the callbacks of the action's commit run, so a blob it replaces
    is deleted as in production. Returns the keys opened, in order."""

    def install(action, times: int = 1, backend=LocalStorage) -> list[str]:
        opened: list[str] = []
        pending = [times]
        names = ("open", "read", "copy") if backend is LocalStorage else ("open", "copy")
        for name in names:
            original = getattr(backend, name)

            def interleaved(self, key, *args, _original=original, **kwargs):
                opened.append(key)
                if pending[0] > 0:
                    pending[0] -= 1
                    with django_capture_on_commit_callbacks(execute=True):
                        action()
                return _original(self, key, *args, **kwargs)

            monkeypatch.setattr(backend, name, interleaved)
        return opened

    return install


def overwrite(user, data: bytes = NEW, path: str = "/f.bin"):
    return lambda: services.write_file(user, path, [data], length=len(data))


@pytest.fixture
def old_file(auth_client):
    assert upload(auth_client, "/f.bin", OLD, method="put").status_code == 201


def assert_describes(response, data: bytes) -> None:
    assert response["ETag"] == f'"{sha(data)}"'
    assert response["X-CallFS-SHA256"] == sha(data)
    assert response["X-CallFS-Size"] == str(len(data))


@pytest.mark.parametrize("new", [NEW, b"small new version"], ids=["streamed", "read at once"])
def test_get_sends_the_new_version_whole(auth_client, user, old_file, between_lookup_and_open,
                                         new):
    opened = between_lookup_and_open(overwrite(user, new))
    response = auth_client.get("/v1/files/f.bin")
    assert response.status_code == 200
    assert body_of(response) == new
    assert response["Content-Length"] == str(len(new))
    assert_describes(response, new)
    assert len(opened) == 2 and opened[0] != opened[1]  # the old key, then the new one


def test_get_of_a_small_file_overwritten_before_its_read(auth_client, user,
                                                         between_lookup_and_open):
    assert upload(auth_client, "/f.bin", b"old", method="put").status_code == 201
    between_lookup_and_open(overwrite(user, b"newer"))
    response = auth_client.get("/v1/files/f.bin")
    assert (response.status_code, body_of(response)) == (200, b"newer")
    assert response["Content-Length"] == "5"
    assert_describes(response, b"newer")


@pytest.mark.parametrize("first,last", [(1000, 1999), (100, 150_000)],
                         ids=["read at once", "streamed"])
def test_a_range_is_cut_from_the_new_version(auth_client, user, old_file,
                                             between_lookup_and_open, first, last):
    between_lookup_and_open(overwrite(user))
    response = auth_client.get("/v1/files/f.bin", HTTP_RANGE=f"bytes={first}-{last}")
    assert response.status_code == 206
    assert body_of(response) == NEW[first:last + 1]
    assert response["Content-Range"] == f"bytes {first}-{last}/{len(NEW)}"
    assert response["Content-Length"] == str(last - first + 1)
    assert_describes(response, NEW)


def test_if_range_naming_the_old_version_gets_the_whole_new_one(auth_client, user, old_file,
                                                                between_lookup_and_open):
    between_lookup_and_open(overwrite(user))
    response = auth_client.get("/v1/files/f.bin", HTTP_RANGE="bytes=0-99",
                               HTTP_IF_RANGE=f'"{sha(OLD)}"')
    assert response.status_code == 200
    assert body_of(response) == NEW
    assert "Content-Range" not in response
    assert_describes(response, NEW)


def test_a_range_past_the_new_end_is_416(auth_client, user, old_file, between_lookup_and_open):
    between_lookup_and_open(overwrite(user))
    response = auth_client.get("/v1/files/f.bin", HTTP_RANGE="bytes=250000-250999")
    assert_error(response, 416, "RANGE_NOT_SATISFIABLE")
    assert response["Content-Range"] == f"bytes */{len(NEW)}"


def test_a_file_deleted_before_its_open_is_404_file_not_found(auth_client, user, old_file,
                                                              between_lookup_and_open):
    between_lookup_and_open(lambda: services.delete(user, "/f.bin"))
    body = assert_error(auth_client.get("/v1/files/f.bin"), 404, "FILE_NOT_FOUND")
    assert "missing from storage" not in body["message"]


def test_bytes_lost_under_unchanged_metadata_are_still_reported_missing(
        auth_client, old_file, storage_root, between_lookup_and_open):
    for blob in storage_root.glob("blobs/*/*"):
        if blob.stat().st_size:
            blob.unlink()
    opened = between_lookup_and_open(lambda: None, times=0)
    body = assert_error(auth_client.get("/v1/files/f.bin"), 404, "FILE_NOT_FOUND")
    assert body["message"] == "the file's bytes are missing from storage"
    assert len(opened) == 1  # nothing changed: no second look


def test_a_file_that_keeps_changing_is_503_after_bounded_tries(auth_client, user, old_file,
                                                               between_lookup_and_open):
    versions = iter(os.urandom(70_000) for _ in range(READ_ATTEMPTS))
    opened = between_lookup_and_open(lambda: overwrite(user, next(versions))(),
                                     times=READ_ATTEMPTS)
    assert_error(auth_client.get("/v1/files/f.bin"), 503, "LOCK_TIMEOUT")
    assert len(opened) == READ_ATTEMPTS


def test_one_try_short_of_the_bound_still_succeeds(auth_client, user, old_file,
                                                   between_lookup_and_open):
    versions = [os.urandom(70_000) for _ in range(READ_ATTEMPTS - 1)]
    pending = iter(versions)
    between_lookup_and_open(lambda: overwrite(user, next(pending))(), times=READ_ATTEMPTS - 1)
    response = auth_client.get("/v1/files/f.bin")
    assert response.status_code == 200
    assert body_of(response) == versions[-1]
    assert_describes(response, versions[-1])


def test_a_download_link_sends_the_new_version(user, old_file, between_lookup_and_open,
                                               settings):
    settings.CALLFS_LINK_DOWNLOAD_RATE = None
    cache.delete(throttling.cache_key("download", "127.0.0.1"))
    token = links.issue(user, "/f.bin", 60).token
    between_lookup_and_open(overwrite(user))
    response = APIClient().get(f"/download/{token}")
    assert response.status_code == 200
    assert body_of(response) == NEW
    assert response["Content-Length"] == str(len(NEW))


def test_a_download_link_to_a_file_deleted_before_its_open_is_404(user, old_file,
                                                                  between_lookup_and_open,
                                                                  settings):
    settings.CALLFS_LINK_DOWNLOAD_RATE = None
    cache.delete(throttling.cache_key("download", "127.0.0.1"))
    token = links.issue(user, "/f.bin", 60).token
    between_lookup_and_open(lambda: services.delete(user, "/f.bin"))
    body = assert_error(APIClient().get(f"/download/{token}"), 404, "FILE_NOT_FOUND")
    assert body["message"] == "failed to get file metadata: metadata not found"


def test_the_admin_download_sends_the_new_version(make_user, between_lookup_and_open):
    boss, key = make_user("boss", superuser=True)
    assert services.write_file(boss, "/f.bin", [OLD])[1]
    between_lookup_and_open(overwrite(boss))
    admin = Client()
    admin.force_login(boss)
    response = admin.get("/admin/filesystem/inode/browse/download/?path=/f.bin")
    assert response.status_code == 200
    assert body_of(response) == NEW
    assert response["Content-Length"] == str(len(NEW))


def test_a_copy_takes_the_new_version_of_its_source(auth_client, user, old_file,
                                                    between_lookup_and_open):
    opened = between_lookup_and_open(overwrite(user))
    response = auth_client.put("/v1/files/copy.bin", HTTP_X_CALLFS_COPY_SOURCE="/f.bin")
    assert response.status_code == 201, response.content
    assert len(opened) == 2  # the old source, then the new one
    assert body_of(auth_client.get("/v1/files/copy.bin")) == NEW


@pytest.mark.s3_live
def test_get_of_an_s3_file_sends_the_new_version(s3_default, auth_client, user,  # noqa: F811
                                                 between_lookup_and_open):
    assert upload(auth_client, "/f.bin", OLD, method="put").status_code == 201
    opened = between_lookup_and_open(overwrite(user), backend=S3Backend)
    response = auth_client.get("/v1/files/f.bin")
    assert response.status_code == 200
    assert body_of(response) == NEW
    assert_describes(response, NEW)
    assert len(opened) == 2

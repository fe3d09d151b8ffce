"""Single-use download links: generate, download, list, revoke, purge, rate limits
(API.md §7.11, §7.12, §9, §10, §16.4)."""

from __future__ import annotations

import dataclasses
import json
import re
import threading
import time
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.conf import settings
from django.core.cache import cache
from django.core.management import call_command
from django.db import connection
from django.test import Client, override_settings
from django.utils import timezone
from prometheus_client import REGISTRY

from links import services, throttling
from links.models import DownloadLink
from tests.helpers import assert_error, body_of, run_in_threads, upload

EXPIRES = re.compile(r"\A\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z\Z")
RECORD_KEYS = ["id", "path", "created_by", "created_at", "expires_at", "used_at", "revoked_at",
               "state"]
CLIENT_IP = "127.0.0.1"  # what Django's test client sends as REMOTE_ADDR


@pytest.fixture(autouse=True)
def no_rate_limits(settings):
    """Most tests fire requests faster than §9 allows; the rate-limit tests restore the limits.
    Buckets live in the cache, which outlives a test (locmem) or the process (Redis)."""
    settings.CALLFS_LINK_GENERATE_RATE = None
    settings.CALLFS_LINK_DOWNLOAD_RATE = None
    keys = [throttling.cache_key(scope, ip) for scope in ("generate", "download")
            for ip in (CLIENT_IP, "10.0.0.7")]
    cache.delete_many(keys)
    yield
    cache.delete_many(keys)


def make_file(client, path: str, data: bytes = b"link me") -> None:
    response = upload(client, path, data)
    assert response.status_code == 201, (path, response.status_code, response.content[:200])


def generate(client, body, **extra):
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post("/v1/links/generate", data=data, content_type="application/json", **extra)


def new_link(client, path: str = "/shared.txt", expiry: int = 3600) -> str:
    response = generate(client, {"path": path, "expiry_seconds": expiry})
    assert response.status_code == 201, (response.status_code, response.content[:200])
    return json.loads(response.content)["token"]


def download(token: str, **extra):
    return Client().get(f"/download/{token}", **extra)


def link_of(token: str) -> DownloadLink:
    return DownloadLink.objects.get(public_id=token.split(".")[0])


def consumptions(status: str) -> float:
    return REGISTRY.get_sample_value("callfs_single_use_link_consumptions_total",
                                     {"status": status}) or 0.0


# --- generate --------------------------------------------------------------------------------


def test_generate_answers_201_with_url_token_and_expiry(auth_client):
    make_file(auth_client, "/shared.txt")
    generated = REGISTRY.get_sample_value("callfs_single_use_link_generations_total") or 0.0
    before = datetime.now(UTC)
    response = generate(auth_client, {"path": "/shared.txt", "expiry_seconds": 3600})
    assert response.status_code == 201
    assert response["Content-Type"].startswith("application/json")
    body = json.loads(response.content)
    assert list(body) == ["url", "token", "expires", "expires_at"]
    # DJANGO_ALLOWED_HOSTS is `*` here: the URL never takes the request's Host (issue 20).
    assert body["url"] == f"{settings.CALLFS.node_url}/download/{body['token']}"
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}", body["token"])
    assert EXPIRES.match(body["expires"]) and body["expires_at"] == body["expires"]
    expires = datetime.fromisoformat(body["expires"].replace("Z", "+00:00"))
    assert timedelta(seconds=3599) < expires - before < timedelta(seconds=3601)
    assert REGISTRY.get_sample_value("callfs_single_use_link_generations_total") == generated + 1


def test_token_is_not_stored_only_its_digest(auth_client):
    make_file(auth_client, "/shared.txt")
    token = new_link(auth_client)
    public_id, secret = token.split(".")
    link = DownloadLink.objects.get()
    assert link.public_id == public_id and link.path == "/shared.txt"
    assert secret not in link.digest and len(link.digest) == 64
    assert link.state == "active" and link.used_at is None and link.revoked_at is None
    assert token not in str(DownloadLink.objects.values().get())


def test_url_uses_the_external_url(auth_client, settings):
    settings.CALLFS = dataclasses.replace(settings.CALLFS,
                                          external_url="https://files.example.com/callfs")
    make_file(auth_client, "/shared.txt")
    body = json.loads(generate(auth_client, {"path": "/shared.txt", "expiry_seconds": 5}).content)
    assert body["url"] == f"https://files.example.com/callfs/download/{body['token']}"


def test_url_takes_the_request_host_only_when_allowed_hosts_lists_it(auth_client, settings):
    settings.ALLOWED_HOSTS = ["testserver", "files.example.com"]
    make_file(auth_client, "/shared.txt")
    body = json.loads(generate(auth_client, {"path": "/shared.txt", "expiry_seconds": 5},
                               HTTP_HOST="files.example.com").content)
    assert body["url"] == f"http://files.example.com/download/{body['token']}"
    refused = generate(auth_client, {"path": "/shared.txt", "expiry_seconds": 5},
                       HTTP_HOST="evil.example")
    assert "evil" not in assert_error(refused, 400, "INVALID_REQUEST")["message"]
    assert DownloadLink.objects.count() == 1  # the refused request made no link


def test_url_never_takes_an_unchecked_host(auth_client, settings):
    """With DJANGO_ALLOWED_HOSTS `*` any Host passes Django's check, so a link would point
    wherever the client said (a phishing URL with a genuine token): the node's URL instead."""
    settings.ALLOWED_HOSTS = ["*"]
    settings.CALLFS = dataclasses.replace(settings.CALLFS, node_url="https://node-1.example:8443")
    make_file(auth_client, "/shared.txt")
    response = generate(auth_client, {"path": "/shared.txt", "expiry_seconds": 5},
                        HTTP_HOST="evil.example")
    body = json.loads(response.content)
    assert response.status_code == 201
    assert body["url"] == f"https://node-1.example:8443/download/{body['token']}"


def test_generate_canonicalises_the_path(auth_client):
    make_file(auth_client, "/docs/a.txt", b"aaa")
    token = new_link(auth_client, "docs//x/../a.txt")
    assert link_of(token).path == "/docs/a.txt"
    assert body_of(download(token)) == b"aaa"


@pytest.mark.parametrize(("body", "status", "code"), [
    ({"path": "/shared.txt", "expiry_seconds": 0}, 400, "INVALID_REQUEST"),
    ({"path": "/shared.txt", "expiry_seconds": 86401}, 400, "INVALID_REQUEST"),
    ({"path": "/shared.txt", "expiry_seconds": -1}, 400, "INVALID_REQUEST"),
    ({"path": "/shared.txt"}, 400, "INVALID_REQUEST"),  # missing expiry counts as 0
    ({"path": "/shared.txt", "expiry_seconds": None}, 400, "INVALID_REQUEST"),
    ({"path": "/shared.txt", "expiry_seconds": "3600"}, 400, "INVALID_REQUEST"),
    ({"path": "/shared.txt", "expiry_seconds": 3600.5}, 400, "INVALID_REQUEST"),
    ({"path": "/shared.txt", "expiry_seconds": True}, 400, "INVALID_REQUEST"),
    ({}, 400, "INVALID_REQUEST"),
    ({"path": "", "expiry_seconds": 60}, 400, "INVALID_REQUEST"),
    ({"path": 123, "expiry_seconds": 60}, 400, "INVALID_REQUEST"),
    ({"expiry_seconds": 60}, 400, "INVALID_REQUEST"),
    ("not json at all", 400, "INVALID_REQUEST"),
    ("", 400, "INVALID_REQUEST"),
    ('["/shared.txt", 60]', 400, "INVALID_REQUEST"),
    ({"path": "/../../../etc/passwd", "expiry_seconds": 60}, 400, "INVALID_PATH"),
    ({"path": "/a\\b", "expiry_seconds": 60}, 400, "INVALID_PATH"),
    ({"path": "/" + "a" * 5000, "expiry_seconds": 60}, 400, "INVALID_REQUEST"),  # > 4096 bytes
    ({"path": "/missing.txt", "expiry_seconds": 60}, 404, "FILE_NOT_FOUND"),
    ({"path": "/missing.txt", "expiry_seconds": 0}, 404, "FILE_NOT_FOUND"),  # 404 before 400
    ({"path": "/missing.txt"}, 404, "FILE_NOT_FOUND"),
])
def test_generate_rejects(auth_client, body, status, code):
    make_file(auth_client, "/shared.txt")
    assert_error(generate(auth_client, body), status, code)
    assert not DownloadLink.objects.exists()


@pytest.mark.parametrize("body", [
    {"path": "/shared.txt", "expiry_seconds": 1},
    {"path": "/shared.txt", "expiry_seconds": 86400},
    {"file_path": "/shared.txt", "expires_in": 60},
    {"file_path": "/shared.txt", "expiry_seconds": 60},
    {"path": "/shared.txt", "expires_in": 60},
    {"path": "shared.txt/", "expiry_seconds": 60},
])
def test_generate_accepts(auth_client, body):
    make_file(auth_client, "/shared.txt")
    response = generate(auth_client, body)
    assert response.status_code == 201, response.content
    assert link_of(json.loads(response.content)["token"]).path == "/shared.txt"


def test_path_wins_over_its_alias(auth_client):
    make_file(auth_client, "/shared.txt")
    body = {"path": "/shared.txt", "file_path": "/missing.txt", "expiry_seconds": 60}
    assert generate(auth_client, body).status_code == 201


def test_generate_needs_authentication(api_client, auth_client):
    make_file(auth_client, "/shared.txt")
    assert_error(generate(api_client, {"path": "/shared.txt", "expiry_seconds": 60}), 401,
                 "AUTHENTICATION_FAILED")


def test_generate_is_post_only(auth_client):
    assert_error(auth_client.get("/v1/links/generate"), 405)


def test_another_reader_may_generate(auth_client, other_client):
    """Read permission is enough to share a file (§10); the link belongs to its generator."""
    make_file(auth_client, "/shared.txt", b"alice's")
    token = new_link(other_client)
    assert link_of(token).created_by.username == "bob"
    assert body_of(download(token)) == b"alice's"


def chmod(client, path: str, mode: str) -> None:
    response = client.patch(f"/v1/files/{path.lstrip('/')}", data=json.dumps({"mode": mode}),
                            content_type="application/json")
    assert response.status_code == 200, (response.status_code, response.content[:200])


def test_generate_needs_read_permission(auth_client, other_client):
    make_file(auth_client, "/private.txt", b"mine")
    chmod(auth_client, "/private.txt", "0600")
    make_file(auth_client, "/closed/inner.txt", b"inner")
    chmod(auth_client, "/closed", "0700")
    assert_error(generate(other_client, {"path": "/private.txt", "expiry_seconds": 60}), 403,
                 "PERMISSION_DENIED")
    assert_error(generate(other_client, {"path": "/closed/inner.txt", "expiry_seconds": 60}),
                 403, "PERMISSION_DENIED")
    assert not DownloadLink.objects.exists()
    assert generate(auth_client, {"path": "/private.txt", "expiry_seconds": 60}).status_code \
        == 201


def test_download_rechecks_the_creators_read_access(auth_client, other_client):
    """A link never reads more than its creator still may: bob's link dies with his access."""
    make_file(auth_client, "/was-public.txt", b"now private")
    token = new_link(other_client, "/was-public.txt")
    chmod(auth_client, "/was-public.txt", "0600")
    assert_error(download(token), 403, "PERMISSION_DENIED")
    assert link_of(token).state == "used"


def test_a_deactivated_creators_links_are_revoked(auth_client, other_client):
    """A link acts for its creator: deactivating bob revokes his links for good (reactivating
    him brings none back); alice's links are untouched."""
    make_file(auth_client, "/shared.txt", b"shared")
    bobs, alices = new_link(other_client), new_link(auth_client)
    bob = link_of(bobs).created_by
    bob.is_active = False
    bob.save()
    assert link_of(bobs).state == "revoked"
    body = assert_error(download(bobs), 410, "LINK_EXPIRED")
    assert body["message"] == "link revoked"
    bob.is_active = True
    bob.save()
    assert_error(download(bobs), 410, "LINK_EXPIRED")
    assert link_of(bobs).used_at is None
    assert body_of(download(alices)) == b"shared"


def test_a_creator_deactivated_behind_the_orms_back_is_caught_at_download(auth_client,
                                                                          other_client):
    """A bulk UPDATE sends no signal: the download itself checks the creator, and revokes."""
    make_file(auth_client, "/shared.txt")
    token = new_link(other_client)
    type(link_of(token).created_by).objects.filter(username="bob").update(is_active=False)
    assert link_of(token).state == "active"
    body = assert_error(download(token), 410, "LINK_EXPIRED")
    assert body["message"] == "link revoked"
    assert link_of(token).state == "revoked" and link_of(token).used_at is None


def test_links_survive_the_revocation_of_their_creators_keys(auth_client, other_client):
    """Decision (issue 20): a link acts for its creator, not for the key that made it; keys
    are rotated without ending the shares (deactivate the user, or revoke the links, for that)."""
    from accounts.keys import forget_authentications, revoke_api_keys

    make_file(auth_client, "/shared.txt", b"still shared")
    token = new_link(other_client)
    assert revoke_api_keys("bob") == 1
    forget_authentications()
    assert other_client.get("/v1/links/").status_code == 401
    assert body_of(download(token)) == b"still shared"


# --- download --------------------------------------------------------------------------------


def test_fresh_link_downloads_the_file_once(auth_client):
    make_file(auth_client, "/docs/report.txt", b"quarterly numbers\n")
    token = new_link(auth_client, "/docs/report.txt")
    succeeded = consumptions("success")

    response = download(token)
    assert response.status_code == 200
    assert body_of(response) == b"quarterly numbers\n"
    assert response["Content-Type"] == "application/octet-stream"
    assert response["Content-Length"] == "18"
    assert response["Content-Disposition"] == 'attachment; filename="report.txt"'
    assert "X-CallFS-Type" not in response
    assert consumptions("success") == succeeded + 1
    assert link_of(token).state == "used"

    again = assert_error(download(token), 410, "LINK_EXPIRED")
    assert again["message"] == "link already used"


def test_download_needs_no_credentials_and_ignores_bad_ones(auth_client):
    make_file(auth_client, "/shared.txt", b"open")
    token = new_link(auth_client)
    assert body_of(download(token, HTTP_AUTHORIZATION="Bearer nonsense-key-123456")) == b"open"


def test_content_disposition_of_a_non_ascii_name(auth_client):
    make_file(auth_client, "/résumé 2024.txt", b"cv")
    response = download(new_link(auth_client, "/résumé 2024.txt"))
    assert response.status_code == 200
    assert response["Content-Disposition"] == \
        "attachment; filename*=utf-8''r%C3%A9sum%C3%A9%202024.txt"


def test_links_to_one_file_are_independent(auth_client):
    make_file(auth_client, "/shared.txt", b"twice")
    first, second = new_link(auth_client), new_link(auth_client)
    assert body_of(download(first)) == b"twice"
    assert body_of(download(second)) == b"twice"
    assert_error(download(first), 410, "LINK_EXPIRED")


def test_expired_link_is_410_even_if_unused(auth_client):
    make_file(auth_client, "/shared.txt")
    token = new_link(auth_client, expiry=60)
    DownloadLink.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    expired = consumptions("expired")
    body = assert_error(download(token), 410, "LINK_EXPIRED")
    assert body["message"] == "link expired"
    assert consumptions("expired") == expired + 1
    assert link_of(token).used_at is None and link_of(token).state == "expired"


def test_expiry_is_checked_before_the_used_state(auth_client):
    make_file(auth_client, "/shared.txt")
    token = new_link(auth_client, expiry=60)
    assert download(token).status_code == 200
    link = link_of(token)
    DownloadLink.objects.update(created_at=link.created_at - timedelta(hours=2),
                                expires_at=timezone.now() - timedelta(hours=1))
    assert assert_error(download(token), 410, "LINK_EXPIRED")["message"] == "link expired"


def test_one_second_link_expires(auth_client):
    """Upstream's test 23 waits 2 s on a 1 s link; moving the clock is enough here."""
    make_file(auth_client, "/shared.txt")
    token = new_link(auth_client, expiry=1)
    link = link_of(token)
    assert link.expires_at - link.created_at == timedelta(seconds=1)
    DownloadLink.objects.update(expires_at=link.created_at + timedelta(microseconds=1))
    assert_error(download(token), 410, "LINK_EXPIRED")


@pytest.mark.parametrize("token", [
    "invalid-token-that-does-not-exist",
    "A" * 22 + "." + "B" * 43,  # well formed, never issued
    "x",
    "%3D%3D",
    "a.b.c",
])
def test_unknown_or_malformed_token_is_404(db, token):
    assert_error(download(token), 404, "LINK_NOT_FOUND")


def test_forged_secret_for_a_real_id_is_404_and_does_not_consume(auth_client):
    make_file(auth_client, "/shared.txt", b"safe")
    token = new_link(auth_client)
    public_id, secret = token.split(".")
    forged = f"{public_id}.{'A' * 43 if secret != 'A' * 43 else 'B' * 43}"
    invalid = consumptions("invalid")
    assert_error(download(forged), 404, "LINK_NOT_FOUND")
    assert consumptions("invalid") == invalid + 1
    assert body_of(download(token)) == b"safe"


def test_link_whose_stored_path_was_altered_no_longer_verifies(auth_client):
    """The digest binds the path: a row pointed elsewhere (e.g. by SQL injection) is useless."""
    make_file(auth_client, "/shared.txt")
    make_file(auth_client, "/secret.txt", b"secret")
    token = new_link(auth_client)
    DownloadLink.objects.update(path="/secret.txt")
    assert_error(download(token), 404, "LINK_NOT_FOUND")


def test_empty_token_is_400(db):
    assert_error(Client().get("/download/"), 400, "INVALID_REQUEST")


def test_head_does_not_consume_the_link(auth_client):
    make_file(auth_client, "/shared.txt", b"still here")
    token = new_link(auth_client)
    assert Client().head(f"/download/{token}").status_code == 405
    assert_error(Client().post(f"/download/{token}"), 405)
    assert body_of(download(token)) == b"still here"


def test_deleted_file_is_404_and_the_link_is_consumed(auth_client):
    make_file(auth_client, "/shared.txt")
    token = new_link(auth_client)
    assert auth_client.delete("/v1/files/shared.txt").status_code == 204
    assert link_of(token).inode_id is None
    assert_error(download(token), 404, "FILE_NOT_FOUND")
    assert_error(download(token), 410, "LINK_EXPIRED")


def test_recreated_file_at_the_path_is_not_served(auth_client, other_client):
    make_file(auth_client, "/shared.txt", b"what alice shared")
    token = new_link(auth_client)
    assert auth_client.delete("/v1/files/shared.txt").status_code == 204
    make_file(other_client, "/shared.txt", b"bob's new file")
    assert_error(download(token), 404, "FILE_NOT_FOUND")


def test_moved_file_is_not_followed(auth_client):
    make_file(auth_client, "/shared.txt", b"moved away")
    token = new_link(auth_client)
    response = auth_client.patch("/v1/files/shared.txt", data=json.dumps({"name": "other.txt"}),
                                 content_type="application/json")
    assert response.status_code == 200
    assert_error(download(token), 404, "FILE_NOT_FOUND")


def test_overwritten_file_serves_the_new_bytes(auth_client):
    make_file(auth_client, "/shared.txt", b"old")
    token = new_link(auth_client)
    assert upload(auth_client, "/shared.txt", b"new bytes", method="put").status_code == 200
    assert body_of(download(token)) == b"new bytes"


def test_directory_link_is_created_but_never_downloads(auth_client):
    make_file(auth_client, "/photos/a.jpg")
    token = new_link(auth_client, "/photos")
    # Upstream answers 500 after consuming; we answer 400 IS_A_DIRECTORY (§16.1), also consumed.
    assert_error(download(token), 400, "IS_A_DIRECTORY")
    assert_error(download(token), 410, "LINK_EXPIRED")


def test_root_directory_link(auth_client):
    token = new_link(auth_client, "/")
    assert link_of(token).path == "/"
    assert_error(download(token), 400, "IS_A_DIRECTORY")


def test_revoked_link_is_410(auth_client):
    make_file(auth_client, "/shared.txt")
    token = new_link(auth_client)
    public_id = token.split(".")[0]
    assert auth_client.delete(f"/v1/links/{public_id}").status_code == 204
    body = assert_error(download(token), 410, "LINK_EXPIRED")
    assert body["message"] == "link revoked"
    record = json.loads(auth_client.get(f"/v1/links/{public_id}").content)
    assert record["state"] == "revoked" and record["revoked_at"] and record["used_at"] is None


def test_revoking_twice_or_after_use_changes_nothing(auth_client):
    make_file(auth_client, "/shared.txt")
    token = new_link(auth_client)
    public_id = token.split(".")[0]
    assert download(token).status_code == 200
    assert auth_client.delete(f"/v1/links/{public_id}/").status_code == 204
    assert link_of(token).state == "used" and link_of(token).revoked_at is None


# --- list, detail, revoke --------------------------------------------------------------------


def records(client, url: str = "/v1/links/") -> dict:
    response = client.get(url)
    assert response.status_code == 200, response.content
    return json.loads(response.content)


def test_list_shows_only_own_links(auth_client, other_client):
    make_file(auth_client, "/a.txt")
    make_file(auth_client, "/b.txt")
    alice_first = new_link(auth_client, "/a.txt")
    alice_second = new_link(auth_client, "/b.txt")
    bob = new_link(other_client, "/a.txt")

    mine = records(auth_client)
    assert mine["count"] == 2
    assert [r["id"] for r in mine["results"]] == [alice_second.split(".")[0],
                                                  alice_first.split(".")[0]]  # newest first
    theirs = records(other_client)
    assert [r["id"] for r in theirs["results"]] == [bob.split(".")[0]]
    assert records(auth_client, "/v1/links")["count"] == 2  # trailing slash optional


def test_record_fields_and_no_secrets(auth_client):
    make_file(auth_client, "/shared.txt")
    token = new_link(auth_client)
    link = link_of(token)
    secret = token.split(".")[1]
    listing = auth_client.get("/v1/links/")
    detail = auth_client.get(f"/v1/links/{link.public_id}")
    for response in (listing, detail):
        assert response.status_code == 200
        text = response.content.decode()
        assert token not in text and secret not in text and link.digest not in text
    record = json.loads(detail.content)
    assert list(record) == RECORD_KEYS
    assert record["id"] == link.public_id and record["path"] == "/shared.txt"
    assert record["created_by"] == "alice" and record["state"] == "active"
    assert EXPIRES.match(record["created_at"]) and EXPIRES.match(record["expires_at"])
    assert record["used_at"] is None and record["revoked_at"] is None
    assert json.loads(listing.content)["results"] == [record]


def test_record_states(auth_client):
    make_file(auth_client, "/shared.txt")
    used, expired, revoked, active = (new_link(auth_client) for _ in range(4))
    assert download(used).status_code == 200
    DownloadLink.objects.filter(public_id=expired.split(".")[0]).update(
        expires_at=timezone.now() - timedelta(seconds=1))
    services.revoke_links(DownloadLink.objects.filter(public_id=revoked.split(".")[0]))
    states = {r["id"]: r["state"] for r in records(auth_client)["results"]}
    assert states == {used.split(".")[0]: "used", expired.split(".")[0]: "expired",
                      revoked.split(".")[0]: "revoked", active.split(".")[0]: "active"}


def test_list_is_paginated(auth_client):
    make_file(auth_client, "/shared.txt")
    tokens = [new_link(auth_client) for _ in range(3)]
    page = records(auth_client, "/v1/links/?limit=2")
    assert page["count"] == 3 and len(page["results"]) == 2 and page["next"]
    rest = records(auth_client, "/v1/links/?limit=2&offset=2")
    assert [r["id"] for r in rest["results"]] == [tokens[0].split(".")[0]]


def test_superuser_sees_every_link(auth_client, other_client, make_user, client_for):
    make_file(auth_client, "/shared.txt")
    alice, bob = new_link(auth_client), new_link(other_client)
    _, key = make_user("boss", superuser=True)
    admin = client_for(key)
    assert {r["id"] for r in records(admin)["results"]} == {alice.split(".")[0],
                                                             bob.split(".")[0]}
    assert admin.delete(f"/v1/links/{alice.split('.')[0]}").status_code == 204
    assert_error(download(alice), 410, "LINK_EXPIRED")


def test_others_links_are_404(auth_client, other_client):
    make_file(auth_client, "/shared.txt", b"kept")
    token = new_link(auth_client)
    public_id = token.split(".")[0]
    assert_error(other_client.get(f"/v1/links/{public_id}"), 404, "LINK_NOT_FOUND")
    assert_error(other_client.delete(f"/v1/links/{public_id}"), 404, "LINK_NOT_FOUND")
    assert_error(auth_client.get("/v1/links/nonexistent"), 404, "LINK_NOT_FOUND")
    assert body_of(download(token)) == b"kept"


def test_link_api_needs_authentication_and_is_read_and_revoke_only(api_client, auth_client):
    assert_error(api_client.get("/v1/links/"), 401, "AUTHENTICATION_FAILED")
    assert_error(api_client.delete("/v1/links/whatever"), 401, "AUTHENTICATION_FAILED")
    assert_error(auth_client.post("/v1/links/", data={}, format="json"), 405)
    response = auth_client.put("/v1/links/whatever", data={}, format="json")
    assert_error(response, 405)


# --- admin -----------------------------------------------------------------------------------


def test_admin_never_shows_the_token_and_revokes(auth_client, make_user):
    make_file(auth_client, "/shared.txt")
    token = new_link(auth_client)
    link = link_of(token)
    boss, _ = make_user("boss", superuser=True)
    browser = Client()
    browser.force_login(boss)

    changelist = browser.get("/admin/links/downloadlink/")
    assert changelist.status_code == 200
    html = changelist.content.decode()
    assert link.public_id in html and "/shared.txt" in html
    assert token not in html and token.split(".")[1] not in html and link.digest not in html
    detail = browser.get(f"/admin/links/downloadlink/{link.pk}/change/")
    assert detail.status_code == 200
    assert token.split(".")[1] not in detail.content.decode()
    assert link.digest not in detail.content.decode()
    assert browser.get("/admin/links/downloadlink/add/").status_code == 403

    response = browser.post("/admin/links/downloadlink/",
                            {"action": "revoke", "_selected_action": [link.pk]})
    assert response.status_code == 302
    assert link_of(token).state == "revoked"


# --- purge -----------------------------------------------------------------------------------


def test_purge_links_deletes_links_that_ended_long_enough_ago(auth_client):
    make_file(auth_client, "/shared.txt")
    names = ["active", "long_used", "long_expired", "long_revoked", "just_used", "long_lived"]
    tokens = {name: new_link(auth_client) for name in names}
    now = timezone.now()
    old = now - timedelta(days=3)

    def backdate(name, **fields):
        DownloadLink.objects.filter(public_id=tokens[name].split(".")[0]).update(
            created_at=old - timedelta(hours=1), **fields)

    backdate("long_used", used_at=old)
    backdate("long_expired", expires_at=old)
    backdate("long_revoked", revoked_at=old)
    backdate("long_lived", expires_at=now + timedelta(hours=1))  # made 3 days ago, still active
    assert download(tokens["just_used"]).status_code == 200

    out = StringIO()
    call_command("purge_links", stdout=out)
    assert "3 download link(s) purged" in out.getvalue()
    left = set(DownloadLink.objects.values_list("public_id", flat=True))
    assert left == {tokens[n].split(".")[0] for n in ("active", "just_used", "long_lived")}
    assert_error(download(tokens["long_used"]), 404, "LINK_NOT_FOUND")

    call_command("purge_links", "--older-than", "0", stdout=out)
    assert set(DownloadLink.objects.values_list("public_id", flat=True)) == {
        tokens[n].split(".")[0] for n in ("active", "long_lived")}


def test_purge_links_rejects_a_negative_age(db):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError):
        call_command("purge_links", "--older-than", "-1")


# --- rate limits (§9) ------------------------------------------------------------------------


def test_default_limits_are_upstreams(settings):
    del settings.CALLFS_LINK_GENERATE_RATE
    del settings.CALLFS_LINK_DOWNLOAD_RATE
    assert throttling.LinkGenerateThrottle().limit() == (100.0, 1)
    assert throttling.LinkDownloadThrottle().limit() == (10.0, 5)


def test_immediate_generates_get_429(auth_client, settings):
    """Burst 1 at 100/s: a request within 10 ms of the previous one is refused. Two requests
    usually suffice; a few more keep the test stable on a loaded machine (upstream's test 11
    fires 150 and needs one 429)."""
    make_file(auth_client, "/shared.txt")
    settings.CALLFS_LINK_GENERATE_RATE = throttling.DEFAULT_GENERATE_RATE
    body = {"path": "/shared.txt", "expiry_seconds": 60}
    assert generate(auth_client, body).status_code == 201
    responses = [generate(auth_client, body) for _ in range(10)]
    limited = [r for r in responses if r.status_code == 429]
    assert limited, [r.status_code for r in responses]
    error = assert_error(limited[0], 429, "RATE_LIMIT_EXCEEDED")
    assert error["message"] == "Rate limit exceeded"
    assert limited[0]["Retry-After"] == "1"
    assert DownloadLink.objects.count() == 1 + len(responses) - len(limited)
    time.sleep(0.02)  # 100 tokens/s: a token is back after 10 ms
    assert generate(auth_client, body).status_code == 201


def test_second_generate_within_the_window_is_429(auth_client, settings):
    make_file(auth_client, "/shared.txt")
    settings.CALLFS_LINK_GENERATE_RATE = (0.001, 1)  # burst 1; the next token in 1000 s
    body = {"path": "/shared.txt", "expiry_seconds": 60}
    assert generate(auth_client, body).status_code == 201
    assert_error(generate(auth_client, body), 429, "RATE_LIMIT_EXCEEDED")
    assert DownloadLink.objects.count() == 1


def test_generate_limit_is_per_peer_address_not_forwarded_for(auth_client, settings):
    make_file(auth_client, "/shared.txt")
    settings.CALLFS_LINK_GENERATE_RATE = (0.001, 1)  # one request, then none for a long time
    body = {"path": "/shared.txt", "expiry_seconds": 60}
    assert generate(auth_client, body).status_code == 201
    assert generate(auth_client, body, HTTP_X_FORWARDED_FOR="10.9.9.9").status_code == 429
    assert generate(auth_client, body, HTTP_X_REAL_IP="10.9.9.9").status_code == 429
    assert generate(auth_client, body, REMOTE_ADDR="10.0.0.7").status_code == 201


def test_authentication_comes_before_the_generate_limit(api_client, settings):
    settings.CALLFS_LINK_GENERATE_RATE = (0.001, 1)
    for _ in range(3):
        assert generate(api_client, {}).status_code == 401


def test_download_burst_of_five(db, settings):
    settings.CALLFS_LINK_DOWNLOAD_RATE = (0.001, 5)  # the default burst, without the refill
    statuses = [download("A" * 22 + "." + "B" * 43).status_code for _ in range(8)]
    assert statuses == [404] * 5 + [429] * 3
    assert_error(download("unknown"), 429, "RATE_LIMIT_EXCEEDED")


def test_twenty_rapid_downloads_hit_the_default_limit(db, settings):
    """Upstream's test 11: 20 sequential requests at 10/s, burst 5, see at least one 429."""
    settings.CALLFS_LINK_DOWNLOAD_RATE = throttling.DEFAULT_DOWNLOAD_RATE
    started = time.monotonic()
    statuses = [download("A" * 22 + "." + "B" * 43).status_code for _ in range(20)]
    elapsed = time.monotonic() - started
    assert statuses[:5] == [404] * 5
    assert 429 in statuses
    assert statuses.count(404) <= 5 + int(elapsed * 10) + 1


def test_rate_limited_download_does_not_consume(auth_client, settings):
    make_file(auth_client, "/shared.txt", b"later")
    token = new_link(auth_client)
    settings.CALLFS_LINK_DOWNLOAD_RATE = (0.001, 1)
    assert download("unknown").status_code == 404
    assert_error(download(token), 429, "RATE_LIMIT_EXCEEDED")
    assert link_of(token).state == "active"


def test_unreachable_redis_is_503_not_a_crash(db, settings):
    settings.CALLFS_LINK_DOWNLOAD_RATE = throttling.DEFAULT_DOWNLOAD_RATE
    dead = {"default": {"BACKEND": "django_redis.cache.RedisCache",
                        "LOCATION": "redis://127.0.0.1:1/0",
                        "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 1, "SOCKET_TIMEOUT": 1}}}
    with override_settings(CACHES=dead):
        assert_error(download("whatever"), 503, "SERVICE_UNAVAILABLE")


def test_token_bucket_refills_at_its_rate(db):
    ident = "10.0.0.7"
    assert throttling.take("generate", ident, 100.0, 2) == (True, 0.0)
    assert throttling.take("generate", ident, 100.0, 2)[0]
    allowed, wait = throttling.take("generate", ident, 100.0, 2)
    assert not allowed and 0 < wait <= 0.01
    time.sleep(0.03)
    assert throttling.take("generate", ident, 100.0, 2)[0]


# --- the single-use race (§10) ---------------------------------------------------------------


def contended_download(token: str):
    """One contender's request. SQLite's in-memory test database is shared between threads in
    shared-cache mode, where a write lock makes other connections fail at once ("database table
    is locked", our 503) instead of waiting as a real SQLite file does; such a contender tries
    again, as any client would after a 503. PostgreSQL never needs this."""
    for _ in range(50):
        response = download(token)
        if response.status_code != 503 or connection.vendor != "sqlite":
            return response
        time.sleep(0.01)
    return response


@pytest.mark.django_db(transaction=True, serialized_rollback=True)  # keeps the root
def test_fifty_concurrent_downloads_exactly_one_wins(make_user, client_for):
    _, key = make_user("racer")
    client = client_for(key)
    make_file(client, "/race.bin", b"only once")
    token = new_link(client, "/race.bin")
    contenders = 50
    start = threading.Barrier(contenders)
    results: list[tuple[int, bytes]] = []
    lock = threading.Lock()

    def contend():
        try:
            start.wait()
            response = contended_download(token)
            outcome = (response.status_code, body_of(response))
            response.close()
            with lock:
                results.append(outcome)
        finally:
            connection.close()

    run_in_threads(*[contend] * contenders, timeout=60)

    statuses = sorted(status for status, _ in results)
    assert statuses == [200] + [410] * (contenders - 1), statuses
    assert [body for status, body in results if status == 200] == [b"only once"]
    assert link_of(token).used_at is not None


def test_loser_of_the_conditional_update_gets_410(auth_client, monkeypatch):
    """A request that read the link as active but lost the UPDATE to another one."""
    make_file(auth_client, "/shared.txt")
    token = new_link(auth_client)
    stale = link_of(token)
    DownloadLink.objects.filter(pk=stale.pk).update(used_at=timezone.now())
    monkeypatch.setattr(services, "_verified", lambda _token: stale)
    with pytest.raises(services.LinkExpired):
        services.redeem(token)


def test_buckets_live_in_the_configured_cache():
    """With Redis every worker and node shares one bucket per IP, refilled atomically by Lua;
    without it the bucket is a (tokens, time) pair in this process's LocMemCache."""
    ident = "10.0.0.7"
    assert throttling.take("download", ident, 0.001, 1)[0]
    assert not throttling.take("download", ident, 0.001, 1)[0]
    key = throttling.cache_key("download", ident)
    if settings.CALLFS.redis_url:
        assert throttling._redis_cache() is not None
        raw = cache.client.get_client().hgetall(cache.client.make_key(key))
        assert set(raw) == {b"tokens", b"ts"}
    else:
        assert throttling._redis_cache() is None
        tokens, _ = cache.get(key)
        assert 0 <= tokens < 1


def test_a_deeply_nested_generate_body_is_400_not_500(auth_client):
    response = auth_client.post("/v1/links/generate", data=b"[" * 4000,
                                content_type="application/json")
    assert_error(response, 400, "INVALID_REQUEST")

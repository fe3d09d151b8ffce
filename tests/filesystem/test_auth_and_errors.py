"""Authentication (API.md §3.1), authorization between two users (§3.3 with §16.2), the error
shape of unknown routes and methods (§1), request ids and security headers (§2.3, §2.4),
/health (§7.1) and /metrics (§7.2)."""

import dataclasses
import json
import re
import time

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import keys
from accounts.keys import forget_authentications, revoke_api_keys
from accounts.models import ApiKey
from cluster import signing
from tests.helpers import assert_error, body_of, upload

AUTH_FAILED = b'{"code":"AUTHENTICATION_FAILED","message":"authentication failed"}'
INTERNAL_SECRET = "test-internal-secret-0123456789"
BOOTSTRAP_KEY = "test-api-key-integration-0123456"
REQUEST_ID = re.compile(r"\A[0-9a-f]{16}\Z")
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; object-src 'none'; base-uri 'self'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "strict-origin-when-cross-origin",
    "Permissions-Policy": "geolocation=(), microphone=(), camera=(), payment=(), usb=(), "
    "magnetometer=(), gyroscope=(), accelerometer=()",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
}
HSTS = "max-age=31536000; includeSubDomains; preload"


def raw_client(authorization: str | None) -> APIClient:
    client = APIClient()
    if authorization is not None:
        client.credentials(HTTP_AUTHORIZATION=authorization)
    return client


def assert_auth_failed(response) -> None:
    assert response.status_code == 401
    assert response["Content-Type"] == "application/json"
    assert response.content == AUTH_FAILED
    assert response.has_header("WWW-Authenticate")


def names_in_root(client) -> list[str]:
    response = client.get("/v1/files/")
    assert response.status_code == 200
    return [i["name"] for i in json.loads(response.content)]


# --- §3.1 Bearer parsing ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "accepted"),
    [
        (None, False),  # absent
        ("", False),  # empty header
        ("Bearer unknown-key-0123456789abcdef", False),
        ("InvalidFormat", False),
        ("Bearer ", False),
        ("Bearer", False),
        ("Bearer    ", False),
        ("Bearer {key}", True),
        ("{key}", True),  # the prefix is optional upstream
        ("Bearer  {key}", True),  # surrounding whitespace is trimmed
        ("Bearer {key}  ", True),
        ("bearer {key}", False),  # the prefix is case-sensitive
        ("BEARER {key}", False),
        ("Token {key}", False),
        ("Basic {key}", False),
        ("Bearer {key}x", False),
        ("Bearer x{key}", False),
    ],
)
def test_bearer_parsing(user_and_key, template, accepted):
    key = user_and_key[1]
    client = raw_client(None if template is None else template.format(key=key))
    response = client.get("/v1/directories/")
    if accepted:
        assert response.status_code == 200
        assert json.loads(response.content)["path"] == "/"
    else:
        assert_auth_failed(response)


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("get", "/v1/files/"),
        ("head", "/v1/files/x"),
        ("post", "/v1/files/x.txt"),
        ("put", "/v1/files/x.txt"),
        ("patch", "/v1/files/x.txt"),
        ("delete", "/v1/files/x.txt"),
        ("get", "/v1/directories/"),
        ("get", "/v1/files"),
        ("get", "/metrics"),
    ],
)
def test_every_api_route_needs_a_key(db, api_client, method, url):
    response = getattr(api_client, method)(url)
    assert response.status_code == 401
    if method != "head":
        assert_auth_failed(response)


def test_a_rejected_request_changes_nothing(db, api_client, auth_client):
    response = upload(api_client, "/x.txt", b"data", method="put")
    assert_auth_failed(response)
    assert names_in_root(auth_client) == []


def test_revoked_key_is_rejected(user_and_key, client_for):
    user, key = user_and_key
    assert client_for(key).get("/v1/files/").status_code == 200
    assert revoke_api_keys(user.username) == 1
    assert_auth_failed(client_for(key).get("/v1/files/"))


def test_a_key_revoked_elsewhere_stops_within_the_cache_window(user_and_key, client_for,
                                                                monkeypatch):
    """Another worker's revocation reaches this one when its cached authentication expires."""
    monkeypatch.setattr(keys, "AUTH_CACHE_SECONDS", 0.05)
    user, key = user_and_key
    assert client_for(key).get("/v1/files/").status_code == 200
    ApiKey.objects.filter(user=user).update(revoked_at=timezone.now())
    time.sleep(0.1)
    assert_auth_failed(client_for(key).get("/v1/files/"))


def test_inactive_user_is_rejected(user_and_key, client_for):
    user, key = user_and_key
    forget_authentications()
    user.is_active = False
    user.save(update_fields=["is_active"])
    assert_auth_failed(client_for(key).get("/v1/files/"))


def test_second_key_is_a_second_user(auth_client, other_client):
    assert upload(auth_client, "/a.txt", b"a").status_code == 201
    assert upload(other_client, "/b.txt", b"b").status_code == 201
    assert auth_client.head("/v1/files/a.txt")["X-CallFS-Owner"] == "alice"
    assert auth_client.head("/v1/files/b.txt")["X-CallFS-Owner"] == "bob"


# --- internal secret and CALLFS_API_KEYS -----------------------------------------------------


@pytest.fixture
def internal_client(settings, db, client_for):
    settings.CALLFS = dataclasses.replace(settings.CALLFS, internal_secret=INTERNAL_SECRET)
    return client_for(INTERNAL_SECRET)


def test_internal_secret_is_an_admin(internal_client, auth_client):
    assert upload(auth_client, "/alice.txt", b"alice").status_code == 201
    assert upload(internal_client, "/proxy.txt", b"p").status_code == 201
    assert internal_client.head("/v1/files/proxy.txt")["X-CallFS-Owner"] == "internal-proxy"
    # Admin: may overwrite and delete another user's file.
    assert upload(internal_client, "/alice.txt", b"admin", method="put").status_code == 200
    assert body_of(auth_client.get("/v1/files/alice.txt")) == b"admin"
    assert internal_client.delete("/v1/files/alice.txt").status_code == 204
    assert names_in_root(auth_client) == ["proxy.txt"]


@pytest.mark.parametrize("authorization", [f"Bearer {INTERNAL_SECRET}", INTERNAL_SECRET])
def test_internal_secret_authenticates(internal_client, authorization):
    assert raw_client(authorization).get("/v1/directories/").status_code == 200


def test_internal_secret_unset_is_not_a_credential(db, client_for):
    assert_auth_failed(client_for(INTERNAL_SECRET).get("/v1/files/"))


def test_api_keys_bootstrap_on_first_use(settings, db, client_for):
    settings.CALLFS = dataclasses.replace(settings.CALLFS,
                                          api_keys={BOOTSTRAP_KEY: "api-user-0"})
    assert ApiKey.objects.count() == 0
    client = client_for(BOOTSTRAP_KEY)
    assert upload(client, "/boot.txt", b"boot").status_code == 201
    assert client.head("/v1/files/boot.txt")["X-CallFS-Owner"] == "api-user-0"
    # The second request finds the key created by the first.
    assert body_of(client.get("/v1/files/boot.txt")) == b"boot"
    assert ApiKey.objects.filter(user__username="api-user-0").count() == 1
    assert_auth_failed(client_for(BOOTSTRAP_KEY + "x").get("/v1/files/"))


# --- two users (§3.3, as amended by §16.2) ---------------------------------------------------


@pytest.fixture
def alice_tree(auth_client):
    for path, data in (("/alice.txt", b"alice's bytes"), ("/adir/inner.txt", b"inner"),
                       ("/aempty/", b"")):
        assert upload(auth_client, path, data).status_code == 201


def test_other_user_can_read_and_list(alice_tree, other_client):
    response = other_client.get("/v1/files/alice.txt")
    assert response.status_code == 200
    assert body_of(response) == b"alice's bytes"
    assert response["X-CallFS-Owner"] == "alice"
    assert other_client.head("/v1/files/adir")["X-CallFS-Owner"] == "alice"
    assert names_in_root(other_client) == ["alice.txt", "adir", "aempty"]
    listing = json.loads(other_client.get("/v1/directories/").content)
    assert [i["name"] for i in listing["items"]] == ["alice.txt", "adir", "aempty"]
    inner = json.loads(other_client.get("/v1/directories/adir").content)
    assert [i["path"] for i in inner["items"]] == ["/adir/inner.txt"]


def test_other_user_cannot_overwrite(alice_tree, other_client, auth_client):
    response = upload(other_client, "/alice.txt", b"bob was here", method="put")
    assert_error(response, 403, "PERMISSION_DENIED")
    assert response.content == b'{"code":"PERMISSION_DENIED","message":"permission denied"}'
    assert body_of(auth_client.get("/v1/files/alice.txt")) == b"alice's bytes"
    assert_error(upload(other_client, "/adir/inner.txt", b"x", method="put"), 403,
                 "PERMISSION_DENIED")
    assert body_of(auth_client.get("/v1/files/adir/inner.txt")) == b"inner"


@pytest.mark.parametrize("path", ["/alice.txt", "/aempty", "/aempty/", "/adir/inner.txt"])
def test_other_user_cannot_delete(alice_tree, other_client, auth_client, path):
    assert_error(other_client.delete(f"/v1/files{path}"), 403, "PERMISSION_DENIED")
    assert auth_client.head(f"/v1/files{path}").status_code == 200


def test_other_user_cannot_delete_recursively(alice_tree, other_client, auth_client):
    assert_error(other_client.delete("/v1/files/adir?recursive=true"), 403,
                 "PERMISSION_DENIED")
    assert body_of(auth_client.get("/v1/files/adir/inner.txt")) == b"inner"


@pytest.mark.parametrize(
    ("source", "body"),
    [
        ("/alice.txt", {"name": "stolen.txt"}),
        ("/alice.txt", {"destination": "/bobs/stolen.txt", "create_parents": True}),
        ("/adir", {"name": "bdir"}),
        ("/aempty", {"destination": "/elsewhere"}),
    ],
)
def test_other_user_cannot_move(alice_tree, other_client, auth_client, source, body):
    response = other_client.patch(f"/v1/files{source}", data=json.dumps(body),
                                  content_type="application/json")
    assert_error(response, 403, "PERMISSION_DENIED")
    assert auth_client.head(f"/v1/files{source}").status_code == 200
    assert names_in_root(auth_client) == ["alice.txt", "adir", "aempty"]


def test_other_user_cannot_replace_with_overwrite(alice_tree, other_client, auth_client):
    assert upload(other_client, "/bob.txt", b"bob").status_code == 201
    response = other_client.patch("/v1/files/bob.txt", data=json.dumps(
        {"destination": "/alice.txt", "overwrite": True}), content_type="application/json")
    assert_error(response, 403, "PERMISSION_DENIED")
    assert body_of(auth_client.get("/v1/files/alice.txt")) == b"alice's bytes"
    assert body_of(auth_client.get("/v1/files/bob.txt")) == b"bob"


def test_other_user_can_create_at_the_top_level(alice_tree, other_client, auth_client):
    # The root is mode 1777 (§16.2): everyone may create top-level entries ...
    assert upload(other_client, "/bob.txt", b"bob").status_code == 201
    assert upload(other_client, "/bobdir/").status_code == 201
    assert auth_client.head("/v1/files/bob.txt")["X-CallFS-Owner"] == "bob"
    # ... and, sticky, only an entry's owner may delete or rename it.
    assert_error(auth_client.delete("/v1/files/bob.txt"), 403, "PERMISSION_DENIED")
    assert_error(auth_client.patch("/v1/files/bobdir", data=json.dumps({"name": "x"}),
                                   content_type="application/json"), 403, "PERMISSION_DENIED")
    assert other_client.delete("/v1/files/bob.txt").status_code == 204


def test_other_user_cannot_create_inside_a_0755_directory(alice_tree, other_client,
                                                          auth_client):
    # §16.2 replaces §3.3: a directory of alice's is mode 0755, so bob (class "other") lacks
    # `w` on it and may not create entries there. (Upstream §3.3 allowed this.)
    assert auth_client.head("/v1/files/adir")["X-CallFS-Mode"] == "0755"
    assert_error(upload(other_client, "/adir/bob.txt", b"b"), 403, "PERMISSION_DENIED")
    assert_error(upload(other_client, "/adir/bob2.txt", b"b", method="put"), 403,
                 "PERMISSION_DENIED")
    assert_error(upload(other_client, "/adir/bsub/"), 403, "PERMISSION_DENIED")
    inner = json.loads(auth_client.get("/v1/files/adir").content)
    assert [i["name"] for i in inner] == ["inner.txt"]


def test_nobody_creates_below_a_file(alice_tree, auth_client, other_client):
    # POSIX: ENOTDIR whoever asks (upstream answered 403 to non-owners, §16.2 replaces it).
    for client in (auth_client, other_client):
        assert_error(upload(client, "/alice.txt/child", b"x"), 400, "NOT_A_DIRECTORY")


def test_missing_target_is_404_not_403(alice_tree, other_client):
    assert_error(other_client.get("/v1/files/nope.txt"), 404, "FILE_NOT_FOUND")
    assert other_client.head("/v1/files/adir/nope.txt").status_code == 404
    assert_error(other_client.delete("/v1/files/nope.txt"), 404, "FILE_NOT_FOUND")
    assert_error(other_client.delete("/v1/files/adir/nope.txt"), 404, "FILE_NOT_FOUND")
    assert_error(other_client.patch("/v1/files/nope.txt", data=json.dumps({"name": "y"}),
                                    content_type="application/json"), 404, "FILE_NOT_FOUND")
    assert_error(other_client.get("/v1/directories/nope"), 404, "FILE_NOT_FOUND")


def test_nobody_but_admins_may_delete_the_root(auth_client, other_client):
    for client in (auth_client, other_client):
        assert_error(client.delete("/v1/files/"), 403, "PERMISSION_DENIED")


# --- unknown routes and methods (§1) ---------------------------------------------------------


@pytest.mark.parametrize("url", ["/", "/etc/passwd", "/v2/files/x", "/healthz", "/files/x",
                                 "/v1files/x"])
def test_unknown_route_outside_v1_is_404_json(db, api_client, url):
    response = api_client.get(url)
    body = assert_error(response, 404)
    assert body["code"] != "INTERNAL_ERROR"
    assert set(body) == {"code", "message"}


@pytest.mark.parametrize("url", ["/v1/nope", "/v1/", "/v1", "/v1/filesx/a",
                                 "/v1/directoriesx"])
def test_unknown_v1_route_authenticates_first(auth_client, api_client, url):
    assert_auth_failed(api_client.get(url))
    body = assert_error(auth_client.get(url), 404)
    assert body["code"] != "INTERNAL_ERROR"
    assert set(body) == {"code", "message"}


@pytest.mark.parametrize(
    ("method", "url", "allowed"),
    [
        ("delete", "/health", {"GET"}),
        ("post", "/health", {"GET"}),
        ("head", "/health", {"GET"}),
        ("options", "/health", {"GET"}),
        ("options", "/v1/files/some.txt", {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"}),
        ("options", "/v1/files/", {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"}),
        ("post", "/v1/directories/x", {"GET"}),
        ("delete", "/v1/directories/", {"GET"}),
    ],
)
def test_method_not_allowed_is_405_with_allow(auth_client, method, url, allowed):
    response = getattr(auth_client, method)(url)
    assert response.status_code == 405
    assert {m.strip() for m in response["Allow"].split(",")} == allowed
    if method != "head":
        body = assert_error(response, 405)
        assert body["code"] == "METHOD_NOT_ALLOWED"


def test_method_not_allowed_under_v1_authenticates_first(db, api_client):
    assert_auth_failed(api_client.options("/v1/files/some.txt"))
    assert_auth_failed(api_client.post("/v1/directories/x"))


def test_options_does_not_touch_anything(auth_client):
    assert upload(auth_client, "/o.txt", b"o").status_code == 201
    assert auth_client.options("/v1/files/o.txt").status_code == 405
    assert body_of(auth_client.get("/v1/files/o.txt")) == b"o"


# --- /health ---------------------------------------------------------------------------------


def test_health_needs_no_key(db, api_client):
    response = api_client.get("/health")
    assert response.status_code == 200
    assert response.content == b'{"status":"ok"}'
    assert response["Content-Type"] == "application/json"


def test_health_ignores_a_bad_key(db):
    assert raw_client("Bearer wrong-key-0123456789abcdef").get("/health").status_code == 200


# --- X-Request-ID and security headers on every response (§2.3, §2.4) ------------------------


def _responses(api_client, auth_client):
    assert upload(auth_client, "/hdr/f.txt", b"f").status_code == 201
    return {
        "health": api_client.get("/health"),
        "401": api_client.get("/v1/files/"),
        "404 outside": api_client.get("/etc/passwd"),
        "404 v1": auth_client.get("/v1/unknown"),
        "404 file": auth_client.get("/v1/files/missing.txt"),
        "405": api_client.delete("/health"),
        "400": auth_client.get("/v1/files/a%5Cb"),
        "409": upload(auth_client, "/hdr/f.txt", b"again"),
        "200 file": auth_client.get("/v1/files/hdr/f.txt"),
        "200 listing": auth_client.get("/v1/files/hdr"),
        "200 head": auth_client.head("/v1/files/hdr/f.txt"),
        "201": upload(auth_client, "/hdr/g.txt", b"g"),
        "204": auth_client.delete("/v1/files/hdr/g.txt"),
        "directories": auth_client.get("/v1/directories/hdr"),
        "metrics": auth_client.get("/metrics"),
    }


def test_every_response_has_a_request_id_and_security_headers(db, api_client, auth_client):
    responses = _responses(api_client, auth_client)
    ids = []
    for label, response in responses.items():
        assert REQUEST_ID.match(response.get("X-Request-ID", "")), label
        ids.append(response["X-Request-ID"])
        for header, value in SECURITY_HEADERS.items():
            assert response.get(header) == value, (label, header)
        assert not response.has_header("Strict-Transport-Security"), label
    assert len(set(ids)) == len(ids)


def test_request_ids_differ_and_incoming_ones_are_ignored(db, api_client):
    first = api_client.get("/health", HTTP_X_REQUEST_ID="0123456789abcdef")
    second = api_client.get("/health", HTTP_X_REQUEST_ID="0123456789abcdef")
    assert first["X-Request-ID"] != second["X-Request-ID"]
    assert "0123456789abcdef" not in (first["X-Request-ID"], second["X-Request-ID"])


def test_hsts_only_over_tls(db, api_client, auth_client):
    assert not api_client.get("/health").has_header("Strict-Transport-Security")
    assert api_client.get("/health", secure=True)["Strict-Transport-Security"] == HSTS
    assert auth_client.get("/v1/files/", secure=True)["Strict-Transport-Security"] == HSTS


def test_no_cors(auth_client):
    response = auth_client.get("/v1/files/", HTTP_ORIGIN="https://evil.example")
    assert response.status_code == 200
    assert not response.has_header("Access-Control-Allow-Origin")


# --- /metrics --------------------------------------------------------------------------------


def test_metrics_needs_a_key(db, api_client):
    assert_auth_failed(api_client.get("/metrics"))


def test_metrics_counts_requests(auth_client):
    assert auth_client.get("/v1/files/").status_code == 200
    response = auth_client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    text = body_of(response).decode()
    assert "callfs_http_requests_total" in text
    assert re.search(r'^callfs_http_requests_total\{[^}]*\} [0-9.e+]+$', text, re.M)


def test_invented_methods_share_one_metrics_label(auth_client):
    """Every method name a client makes up would otherwise be a new series in every worker."""
    series = 'callfs_http_requests_total{method="OTHER",path="/v1/files/*",status_code="405"}'

    def count() -> tuple[float, str]:
        text = body_of(auth_client.get("/metrics")).decode()
        found = re.search(rf"^{re.escape(series)} ([0-9.e+]+)$", text, re.M)
        return (float(found.group(1)) if found else 0.0), text

    before, _ = count()
    for method in ("FOOA", "FOOB"):
        assert auth_client.generic(method, "/v1/files/").status_code == 405
    after, text = count()
    assert after == before + 2
    assert "FOOA" not in text and "FOOB" not in text


@pytest.mark.parametrize("url", ["/v1/internal/shards/abc/0", "/v1/internal/raft/join",
                                 "/v1/internal/raft/metadata/apply", "/v1/internal"])
def test_internal_endpoints_refuse_api_keys(auth_client, api_client, settings, url):
    """Upstream's internal routes refuse no key and API keys (T 32); here they take signed peer
    requests only (cluster/signing.py), never the bare internal secret."""
    settings.CALLFS = dataclasses.replace(settings.CALLFS, internal_secret="s" * 24)
    assert_error(api_client.post(url), 401, "AUTHENTICATION_FAILED")
    assert_error(auth_client.put(url, data=b"x", content_type="application/octet-stream"), 401,
                 "AUTHENTICATION_FAILED")
    secret = APIClient()
    secret.credentials(HTTP_AUTHORIZATION="Bearer " + "s" * 24)
    assert_error(secret.get(url), 401, "AUTHENTICATION_FAILED")  # never the bare secret
    signed = signing.sign("GET", url, settings.CALLFS.node_id)
    assert APIClient().get(url, headers=signed).status_code == 404  # a signed peer request

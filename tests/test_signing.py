"""Signed node-to-node requests (issue 20, item 2): the internal secret never leaves a node, and
/v1/internal/* takes nothing but a fresh signature made for this node.

The receiving side is driven with Django's test client; the sending side talks real HTTP to a
tiny listener on 127.0.0.1 that a node row points at, as a rogue node URL would."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import unquote

import pytest
from django.test import Client
from requests.structures import CaseInsensitiveDict

from cluster import signing
from cluster.models import Node
from filesystem.models import Inode
from filesystem.storage import get_backend
from tests.helpers import assert_error, upload

SECRET = "test-internal-secret-0123456789"
HERE = "node-here"
KEY = "0123456789abcdef0123456789abcdef"
BLOB = f"/v1/internal/blobs/{KEY}"


@pytest.fixture(autouse=True)
def peer_settings(settings):
    settings.CALLFS = dataclasses.replace(settings.CALLFS, internal_secret=SECRET, node_id=HERE)


@pytest.fixture
def client(db):
    return Client()


def signed_headers(method: str, target: str, *, node: str = HERE,
                   content: str = signing.EMPTY_SHA256, now: float | None = None,
                   **extra: str) -> dict[str, str]:
    """The headers a peer sends: the request's own (`extra`) and the signature over them."""
    own = {name.replace("_", "-"): value for name, value in extra.items()}
    return {**own, **signing.sign(method, target, node, content, own, now=now)}


def send(client, method: str, target: str, headers: dict[str, str], body: bytes = b""):
    return client.generic(method, target, data=body, content_type="application/octet-stream",
                          headers=headers)


def streamed(method: str, target: str, data: bytes) -> tuple[dict[str, str], bytes]:
    """A body sent as a relayed upload is: signed "streaming", followed by its trailer."""
    headers = signed_headers(method, target, content=signing.STREAMING)
    return headers, b"".join(signing.trailed([data], signing.signature_of(headers)))


def stored_keys() -> set[str]:
    return set(get_backend("localfs").keys())


# --- the receiver: what /v1/internal/* accepts -------------------------------------------------


def test_signed_requests_use_the_blob_api(client):
    data = secrets.token_bytes(70_000)
    headers, body = streamed("PUT", BLOB, data)
    response = send(client, "PUT", BLOB, headers, body)
    assert response.status_code == 201, response.content
    assert json.loads(response.content) == {"size": len(data),
                                            "sha256": hashlib.sha256(data).hexdigest()}
    got = client.get(BLOB, headers=signed_headers("GET", BLOB))
    assert got.status_code == 200 and b"".join(got.streaming_content) == data
    ranged = client.get(BLOB, headers=signed_headers("GET", BLOB, Range="bytes=10-19"))
    assert ranged.status_code == 206 and b"".join(ranged.streaming_content) == data[10:20]
    head = client.head(BLOB, headers=signed_headers("HEAD", BLOB))
    assert head.status_code == 200 and head["Content-Length"] == str(len(data))
    copy_target = BLOB.replace(KEY, "f" * 32)
    copied = send(client, "PUT", copy_target,
                  signed_headers("PUT", copy_target, X_CallFS_Copy_From=KEY))
    assert copied.status_code == 201
    assert client.delete(BLOB, headers=signed_headers("DELETE", BLOB)).status_code == 204
    assert stored_keys() == {"f" * 32}


def test_a_write_signed_with_the_bodys_digest_stores_exactly_those_bytes(client):
    data = b"moved between nodes" * 1000
    digest = hashlib.sha256(data).hexdigest()
    response = send(client, "PUT", BLOB, signed_headers("PUT", BLOB, content=digest), data)
    assert response.status_code == 201
    other = BLOB.replace(KEY, "e" * 32)
    altered = send(client, "PUT", other, signed_headers("PUT", other, content=digest),
                   data + b"!")
    assert_error(altered, 400, "CHECKSUM_MISMATCH")
    assert stored_keys() == {KEY}


@pytest.mark.parametrize("change", ["altered", "truncated", "no trailer"])
def test_a_streamed_body_altered_on_the_way_is_refused_and_not_stored(client, change):
    data = secrets.token_bytes(5000)
    intact = BLOB.replace(KEY, "c" * 32)
    assert send(client, "PUT", intact, *streamed("PUT", intact, data)).status_code == 201
    headers, body = streamed("PUT", BLOB, data)
    body = {"altered": body[:100] + b"X" + body[101:], "truncated": body[:-1],
            "no trailer": data}[change]
    assert_error(send(client, "PUT", BLOB, headers, body), 401, "AUTHENTICATION_FAILED")
    assert stored_keys() == {"c" * 32}


def test_a_signed_request_reaches_an_unknown_internal_endpoint(client):
    target = "/v1/internal/shards/abc/0"
    assert_error(client.get(target, headers=signed_headers("GET", target)), 404)


def _refused(response) -> None:
    assert_error(response, 401, "AUTHENTICATION_FAILED")
    assert response["WWW-Authenticate"] == signing.SCHEME


def test_the_bare_secret_is_refused_on_the_internal_api(client, make_user):
    _, key = make_user("alice")
    for target in (BLOB, "/v1/internal/shards/abc/0", "/v1/internal"):
        for authorization in (f"Bearer {SECRET}", SECRET, f"Bearer {key}", ""):
            _refused(client.get(target, headers={"Authorization": authorization}))


def test_a_replayed_request_is_refused(client):
    headers = signed_headers("GET", BLOB)
    assert client.get(BLOB, headers=headers).status_code == 404  # reached the view
    _refused(client.get(BLOB, headers=headers))


def test_clock_skew_within_the_window_is_accepted(client):
    for offset in (-signing.MAX_SKEW_SECONDS + 2, signing.MAX_SKEW_SECONDS - 2):
        headers = signed_headers("GET", BLOB, now=time.time() + offset)
        assert client.get(BLOB, headers=headers).status_code == 404


def _other_key_target() -> str:
    return BLOB.replace(KEY, "a" * 32)


# Each case: (what is signed, what is sent); the signature must not cover what is sent.
REFUSALS = {
    "bad signature": lambda: ("GET", BLOB, {**signed_headers("GET", BLOB),
                                             "Authorization": f"{signing.SCHEME} {'0' * 64}"}),
    "stale timestamp": lambda: ("GET", BLOB, signed_headers(
        "GET", BLOB, now=time.time() - signing.MAX_SKEW_SECONDS - 2)),
    "future timestamp": lambda: ("GET", BLOB, signed_headers(
        "GET", BLOB, now=time.time() + signing.MAX_SKEW_SECONDS + 2)),
    "altered path": lambda: ("GET", _other_key_target(), signed_headers("GET", BLOB)),
    "altered query": lambda: ("GET", BLOB + "?x=1", signed_headers("GET", BLOB)),
    "altered method": lambda: ("DELETE", BLOB, signed_headers("GET", BLOB)),
    "altered timestamp": lambda: ("GET", BLOB, {
        **(h := signed_headers("GET", BLOB)),
        signing.TIMESTAMP_HEADER: str(int(h[signing.TIMESTAMP_HEADER]) - 1)}),
    "altered nonce": lambda: ("GET", BLOB, {**signed_headers("GET", BLOB),
                                             signing.NONCE_HEADER: "1" * 32}),
    "altered range": lambda: ("GET", BLOB, {**signed_headers("GET", BLOB, Range="bytes=0-1"),
                                            "Range": "bytes=0-"}),
    "added copy source": lambda: ("PUT", BLOB, {**signed_headers("PUT", BLOB),
                                                "X-CallFS-Copy-From": "a" * 32}),
    "for another node": lambda: ("GET", BLOB, signed_headers("GET", BLOB, node="node-there")),
    "signed with another secret": lambda: ("GET", BLOB, _signed_elsewhere()),
    "missing headers": lambda: ("GET", BLOB, {
        "Authorization": signed_headers("GET", BLOB)["Authorization"]}),
}


def _signed_elsewhere() -> dict[str, str]:
    from django.conf import settings

    mine = settings.CALLFS
    settings.CALLFS = dataclasses.replace(mine, internal_secret="another-secret-0123456789")
    try:
        return signed_headers("GET", BLOB)
    finally:
        settings.CALLFS = mine


@pytest.mark.parametrize("case", list(REFUSALS))
def test_a_request_not_signed_for_what_it_does_is_refused(client, case):
    assert send(client, "PUT", BLOB, *streamed("PUT", BLOB, b"a blob")).status_code == 201
    method, target, headers = REFUSALS[case]()
    _refused(send(client, method, target, headers))
    assert stored_keys() == {KEY}
    # The same endpoint takes a request signed for what it does.
    assert client.get(BLOB, headers=signed_headers("GET", BLOB)).status_code == 200


def test_without_the_secret_nothing_is_accepted(client, settings):
    assert client.get(BLOB, headers=signed_headers("GET", BLOB)).status_code == 404
    headers = signed_headers("GET", BLOB)
    settings.CALLFS = dataclasses.replace(settings.CALLFS, internal_secret=None)
    _refused(client.get(BLOB, headers=headers))


def test_a_down_replay_store_refuses_with_503(client, monkeypatch):
    class Down:
        def add(self, *args, **kwargs):
            raise ConnectionError("redis is gone")

    monkeypatch.setattr(signing, "caches", {"default": Down()})
    assert_error(client.get(BLOB, headers=signed_headers("GET", BLOB)), 503,
                 "SERVICE_UNAVAILABLE")


def test_a_streamed_body_keeps_its_bytes_whatever_the_chunking():
    data = secrets.token_bytes(1000)
    headers = signed_headers("PUT", BLOB, content=signing.STREAMING)
    signed = signing.SignedRequest(HERE, 0, "0" * 32, signing.STREAMING,
                                   signing.signature_of(headers))
    whole = b"".join(signing.trailed([data], signed.signature))
    for size in (1, 7, 31, 32, 33, 64, 999, 1031, 1032, 5000):
        chunks = [whole[i:i + size] for i in range(0, len(whole), size)]
        body = signing.TrailedBody(chunks, signed)
        assert b"".join(body) == data
        assert body.matches(hashlib.sha256(data).hexdigest())
        assert not body.matches(hashlib.sha256(data + b"x").hexdigest())


# --- the sender: what a node row's URL receives ------------------------------------------------


@dataclass
class Received:
    method: str
    target: str
    headers: CaseInsensitiveDict
    raw: bytes  # request head and body as they came off the socket
    body: bytes = b""  # de-chunked


@dataclass
class Listener:
    """Whatever a node row points at: records every request, answers 503."""

    sock: socket.socket
    received: list[Received] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(10)
                try:
                    self.received.append(self._read(conn))
                except (OSError, ValueError):
                    continue
                conn.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                             b"Connection: close\r\n\r\n")

    @staticmethod
    def _read(conn: socket.socket) -> Received:
        stream = conn.makefile("rb")
        raw = bytearray()
        lines = []
        while (line := stream.readline()) not in (b"\r\n", b""):
            raw += line
            lines.append(line.decode("latin-1").rstrip("\r\n"))
        method, target, _ = lines[0].split(" ", 2)
        headers = CaseInsensitiveDict(line.split(": ", 1) for line in lines[1:])
        body = bytearray()
        if headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size_line = stream.readline()
                raw += size_line
                size = int(size_line.split(b";")[0], 16)
                piece = stream.read(size + 2)
                raw += piece
                if size == 0:
                    break
                body += piece[:-2]
        elif int(headers.get("Content-Length", 0)):
            body += stream.read(int(headers["Content-Length"]))
            raw += body
        return Received(method, target, headers, bytes(raw), bytes(body))


@pytest.fixture
def listener():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.settimeout(0.05)  # accept() wakes up to notice the end of the test
    server = Listener(sock)
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    yield server
    server.stop.set()
    thread.join(timeout=5)
    sock.close()


@pytest.fixture
def rogue(listener, db):
    """A node row pointing at the listener, as `evil → http://127.0.0.1:8451` did."""
    node_id = f"evil-{secrets.token_hex(4)}"
    Node.objects.create(node_id=node_id, url=listener.url)
    return node_id


def _relay_a_move(auth_client, node_id: str) -> None:
    """The finding: a user's PATCH {"instance": ...} sends the bytes to that node."""
    assert upload(auth_client, "/f.bin", b"data" * 100).status_code == 201
    response = auth_client.patch("/v1/files/f.bin", data=json.dumps(
        {"destination": "/f.bin", "instance": node_id}), content_type="application/json")
    assert response.status_code >= 500


def _relay_a_read(auth_client, node_id: str) -> None:
    assert upload(auth_client, "/f.bin", b"data").status_code == 201
    Inode.objects.filter(path="/f.bin").update(node_id=node_id)
    assert auth_client.get("/v1/files/f.bin").status_code >= 500


def _relay_an_overwrite(auth_client, node_id: str) -> None:
    """An upload streamed to the file's node: no digest known ahead, so a signed trailer."""
    assert upload(auth_client, "/f.bin", b"data").status_code == 201
    Inode.objects.filter(path="/f.bin").update(node_id=node_id)
    assert upload(auth_client, "/f.bin", b"new bytes" * 10_000, method="put").status_code >= 500


@pytest.mark.parametrize("relay", [_relay_a_move, _relay_a_read, _relay_an_overwrite])
def test_a_node_url_never_receives_the_internal_secret(auth_client, listener, rogue, relay,
                                                       settings):
    relay(auth_client, rogue)
    assert listener.received, "the relay never reached the node's URL"
    for request in listener.received:
        assert SECRET.encode() not in request.raw
        assert all(SECRET not in value for value in request.headers.values())
        assert request.headers["Authorization"].startswith(f"{signing.SCHEME} ")
        target = unquote(request.target)
        # What it got is a signature for that node only: at this node it is refused...
        with pytest.raises(signing.SignatureError, match="not this one"):
            signing.verify(request.method, target, request.headers)
        # ...and it is exactly one request's signature, made for the node it was sent to.
        settings.CALLFS = dataclasses.replace(settings.CALLFS, node_id=rogue)
        verified = signing.verify(request.method, target, request.headers)
        settings.CALLFS = dataclasses.replace(settings.CALLFS, node_id=HERE)
        if verified.content_sha256 == signing.STREAMING:
            body = signing.TrailedBody([request.body], verified)
            data = b"".join(body)
            assert data == b"new bytes" * 10_000
            assert body.matches(hashlib.sha256(data).hexdigest())
        elif request.method == "PUT":
            assert verified.content_sha256 == hashlib.sha256(request.body).hexdigest()

"""Black-box tests: the real server under gunicorn, spoken to over HTTP (requests and raw sockets).

Tests run in file order; the last one checks that the server survived everything before it.
"""

from __future__ import annotations

import hashlib
import json
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest
import requests

from tests.blackbox.conftest import Server, rss_bytes
from tests.helpers import run_in_threads

pytestmark = pytest.mark.blackbox

MiB = 1024 * 1024
TIMEOUT = 30


# --- raw HTTP -------------------------------------------------------------------------------


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes
    raw: bytes

    def json(self):
        return json.loads(self.body)


def _parse_response(data: bytes) -> RawResponse:
    rest = data
    while True:  # skip interim 1xx answers (100 Continue)
        head, sep, body = rest.partition(b"\r\n\r\n")
        if not sep:
            raise AssertionError(f"no complete HTTP response: {data[:500]!r}")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        if 100 <= status < 200:
            rest = body
            continue
        break
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = body[: int(headers["content-length"])]
    return RawResponse(status, headers, body, data)


def _read_all(sock: socket.socket) -> bytes:
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        data += chunk
    return data


def raw_http(server: Server, request: bytes, timeout: float = 15) -> RawResponse:
    """Send bytes as they are (no client-side normalisation) and read the answer to EOF."""
    with socket.create_connection((server.host, server.port), timeout=timeout) as sock:
        try:
            sock.sendall(request)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer and close before it has read everything
        return _parse_response(_read_all(sock))


def raw_get(server: Server, target: str, extra: str = "", key: str | None = None,
            method: str = "GET", body: bytes = b"") -> RawResponse:
    auth = f"Authorization: Bearer {key or server.alice_key}\r\n"
    length = f"Content-Length: {len(body)}\r\n" if body or method in ("PUT", "POST") else ""
    request = (f"{method} {target} HTTP/1.1\r\nHost: {server.host}:{server.port}\r\n{auth}"
               f"{length}{extra}Connection: close\r\n\r\n").encode("latin-1") + body
    return raw_http(server, request)


# --- helpers --------------------------------------------------------------------------------


def chunks_of(data: bytes, sizes: list[int]) -> Iterator[bytes]:
    """`data` cut into pieces of the given sizes (the rest as one last piece)."""
    offset = 0
    for size in sizes:
        yield data[offset:offset + size]
        offset += size
    if offset < len(data):
        yield data[offset:]


def get_bytes(session: requests.Session, url: str) -> bytes:
    response = session.get(url, timeout=TIMEOUT)
    assert response.status_code == 200, (response.status_code, response.text[:300])
    return response.content


def assert_error(response, status: int, code: str) -> None:
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["code"] == code, body
    assert "message" in body


def tmp_leftovers(server: Server) -> list[str]:
    tmp = server.data_dir / "tmp"
    if not tmp.exists():
        return []
    return sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*"))


def wait_no_tmp_leftovers(server: Server, timeout: float = 5.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        left = tmp_leftovers(server)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


# --- 1. chunked uploads (API.md §2.1, §7.5, T 28) -------------------------------------------


@pytest.mark.blackbox
def test_chunked_post_and_put_store_exactly_the_bytes_received(server: Server):
    s = server.session()
    first = os.urandom(3 * MiB + 12345)
    url = server.url("chunked/data.bin")

    # Odd-sized pieces, so chunk boundaries never line up with the server's read size.
    response = s.post(url, data=chunks_of(first, [1, 7, 65537, MiB + 3, 10]), timeout=TIMEOUT)
    assert response.status_code == 201, (response.status_code, response.text[:300])
    assert response.request.headers.get("Transfer-Encoding") == "chunked"
    assert "Content-Length" not in response.request.headers
    got = s.get(url, timeout=TIMEOUT)
    assert got.status_code == 200
    assert got.content == first
    assert got.headers["X-CallFS-Size"] == str(len(first))
    assert got.headers["Content-Length"] == str(len(first))

    # PUT over it with a smaller chunked body: the size shrinks to what actually arrived.
    second = os.urandom(200_001)
    response = s.put(url, data=chunks_of(second, [4096] * 10), timeout=TIMEOUT)
    assert response.status_code == 200, (response.status_code, response.text[:300])
    assert response.request.headers.get("Transfer-Encoding") == "chunked"
    assert get_bytes(s, url) == second
    head = s.head(url, timeout=TIMEOUT)
    assert head.status_code == 200
    assert head.headers["X-CallFS-Size"] == str(len(second))
    assert head.headers["ETag"] == f'"{hashlib.sha256(second).hexdigest()}"'

    # PUT creating a new file, chunked.
    new_url = server.url("chunked/put-new.bin")
    third = os.urandom(MiB + 1)
    response = s.put(new_url, data=chunks_of(third, [MiB // 2]), timeout=TIMEOUT)
    assert response.status_code == 201, (response.status_code, response.text[:300])
    assert get_bytes(s, new_url) == third
    assert s.head(new_url, timeout=TIMEOUT).headers["X-CallFS-Size"] == str(len(third))


@pytest.mark.blackbox
def test_chunked_upload_with_empty_body_creates_an_empty_file(server: Server):
    s = server.session()
    url = server.url("chunked/empty.bin")
    response = s.post(url, data=iter(()), headers={"Transfer-Encoding": "chunked"},
                      timeout=TIMEOUT)
    assert response.status_code == 201, (response.status_code, response.text[:300])
    got = s.get(url, timeout=TIMEOUT)
    assert got.status_code == 200
    assert got.content == b""
    assert got.headers["X-CallFS-Size"] == "0"


@pytest.mark.blackbox
def test_raw_chunked_upload_with_chunk_extensions_and_trailer(server: Server):
    """A hand-made chunked body (hex sizes in upper case, an extension, a trailer field)."""
    body = b"hello, " + b"x" * 300 + b" world"
    parts = [body[:7], body[7:307], body[307:]]
    encoded = b"".join(f"{len(p):X};ext=1\r\n".encode() + p + b"\r\n" for p in parts)
    encoded += b"0\r\nX-Trailer: yes\r\n\r\n"
    target = server.raw_target("chunked/raw.bin")
    request = (f"PUT {target} HTTP/1.1\r\nHost: {server.host}\r\n"
               f"Authorization: Bearer {server.alice_key}\r\nTransfer-Encoding: chunked\r\n"
               "Connection: close\r\n\r\n").encode() + encoded
    response = raw_http(server, request)
    assert response.status == 201, response.raw[:500]
    got = server.session().get(server.url("chunked/raw.bin"), timeout=TIMEOUT)
    assert got.content == body
    assert got.headers["X-CallFS-Size"] == str(len(body))


# --- 2. Expect: 100-continue (API.md §2.1) --------------------------------------------------


@pytest.mark.blackbox
def test_expect_100_continue_upload_is_prompt_and_round_trips(server: Server):
    s = server.session()
    body = os.urandom(2 * MiB)
    url = server.url("expect/requests.bin")
    started = time.monotonic()
    response = s.post(url, data=body, headers={"Expect": "100-continue"}, timeout=TIMEOUT)
    elapsed = time.monotonic() - started
    assert response.status_code == 201, (response.status_code, response.text[:300])
    assert elapsed < 5, f"2 MiB upload with Expect: 100-continue took {elapsed:.2f} s"
    assert get_bytes(s, url) == body


@pytest.mark.blackbox
def test_expect_100_continue_like_curl(server: Server):
    """As curl does: send the headers, wait (up to 1 s) for `100 Continue`, then the body."""
    body = os.urandom(2 * MiB)
    target = server.raw_target("expect/curl.bin")
    head = (f"PUT {target} HTTP/1.1\r\nHost: {server.host}\r\n"
            f"Authorization: Bearer {server.alice_key}\r\nContent-Length: {len(body)}\r\n"
            "Content-Type: application/octet-stream\r\nExpect: 100-continue\r\n"
            "Connection: close\r\n\r\n").encode()
    started = time.monotonic()
    with socket.create_connection((server.host, server.port), timeout=TIMEOUT) as sock:
        sock.sendall(head)
        ready, _, _ = select.select([sock], [], [], 1.0)
        interim = sock.recv(65536) if ready else b""
        sock.sendall(body)
        answer = _parse_response(interim + _read_all(sock))
    elapsed = time.monotonic() - started
    assert answer.status == 201, answer.raw[:500]
    assert elapsed < 5, f"took {elapsed:.2f} s"
    assert get_bytes(server.session(), server.url("expect/curl.bin")) == body


# --- 3. Range (API.md §16.3) ----------------------------------------------------------------


@pytest.mark.blackbox
def test_range_requests(server: Server):
    s = server.session()
    body = bytes(range(256)) * 4 + b"tail-bytes"  # 1034 bytes
    size = len(body)
    url = server.url("range/file.bin")
    assert s.post(url, data=body, timeout=TIMEOUT).status_code == 201

    first = s.get(url, headers={"Range": "bytes=0-99"}, timeout=TIMEOUT)
    assert first.status_code == 206
    assert first.content == body[:100]
    assert first.headers["Content-Range"] == f"bytes 0-99/{size}"
    assert first.headers["Content-Length"] == "100"
    assert first.headers["Accept-Ranges"] == "bytes"

    middle = s.get(url, headers={"Range": "bytes=500-"}, timeout=TIMEOUT)
    assert middle.status_code == 206
    assert middle.content == body[500:]
    assert middle.headers["Content-Range"] == f"bytes 500-{size - 1}/{size}"

    last = s.get(url, headers={"Range": "bytes=-10"}, timeout=TIMEOUT)
    assert last.status_code == 206
    assert last.content == body[-10:] == b"tail-bytes"
    assert last.headers["Content-Range"] == f"bytes {size - 10}-{size - 1}/{size}"

    clamped = s.get(url, headers={"Range": f"bytes={size - 4}-{size + 1000}"}, timeout=TIMEOUT)
    assert clamped.status_code == 206
    assert clamped.content == body[-4:]
    assert clamped.headers["Content-Range"] == f"bytes {size - 4}-{size - 1}/{size}"

    beyond = s.get(url, headers={"Range": f"bytes={size}-{size + 10}"}, timeout=TIMEOUT)
    assert_error(beyond, 416, "RANGE_NOT_SATISFIABLE")
    assert beyond.headers["Content-Range"] == f"bytes */{size}"

    whole = s.get(url, timeout=TIMEOUT)
    assert whole.status_code == 200
    assert whole.content == body


# --- 4. 50 MiB streaming round trip in constant memory --------------------------------------


class RssSampler(threading.Thread):
    """Samples VmRSS of the given pids every 50 ms; keeps the peak per pid."""

    def __init__(self, pids: list[int]):
        super().__init__(daemon=True)
        self.pids = pids
        self.peak: dict[int, int] = {}
        self.samples = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            for pid in self.pids:
                rss = rss_bytes(pid)
                if rss is not None:
                    self.peak[pid] = max(self.peak.get(pid, 0), rss)
            self.samples += 1
            self._stop_event.wait(0.05)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)


@pytest.mark.blackbox
def test_50_mib_streaming_round_trip_in_constant_memory(server: Server):
    s = server.session()
    total_chunks = 50
    url = server.url("big/50mib.bin")

    # Warm both workers up (lazy imports, first-request caches) before taking the baseline.
    for i in range(8):
        warm = server.url(f"big/warm-{i}.bin")
        assert s.put(warm, data=os.urandom(256 * 1024), timeout=TIMEOUT).status_code == 201
        assert len(get_bytes(s, warm)) == 256 * 1024

    workers = server.workers()
    assert len(workers) == 2, f"expected 2 gunicorn workers, found {workers}"
    baseline = {pid: rss_bytes(pid) or 0 for pid in workers}

    digest = hashlib.sha256()
    sent = 0

    def generate() -> Iterator[bytes]:
        nonlocal sent
        for _ in range(total_chunks):
            chunk = os.urandom(MiB)
            digest.update(chunk)
            sent += len(chunk)
            yield chunk

    sampler = RssSampler(workers)
    sampler.start()
    try:
        response = s.put(url, data=generate(), timeout=120)
        assert response.status_code == 201, (response.status_code, response.text[:300])
        expected = digest.hexdigest()

        download = hashlib.sha256()
        received = 0
        with s.get(url, stream=True, timeout=120) as got:
            assert got.status_code == 200
            assert got.headers["Content-Length"] == str(total_chunks * MiB)
            assert got.headers["X-CallFS-Size"] == str(total_chunks * MiB)
            assert got.headers["ETag"] == f'"{expected}"'
            for piece in got.iter_content(MiB):
                download.update(piece)
                received += len(piece)
    finally:
        sampler.stop()

    assert sent == received == total_chunks * MiB
    assert download.hexdigest() == expected
    head = s.head(url, timeout=TIMEOUT)
    assert head.headers["ETag"] == f'"{expected}"'
    assert head.headers["X-CallFS-SHA256"] == expected

    assert sampler.samples >= 3, "the memory sampler did not run"
    peak = max(sampler.peak.values())
    growth = {pid: sampler.peak.get(pid, 0) - baseline[pid] for pid in workers}
    report = {pid: (baseline[pid] // MiB, sampler.peak.get(pid, 0) // MiB) for pid in workers}
    assert peak < 150 * 1000 * 1000, f"worker RSS peaked at {peak / MiB:.0f} MiB: {report}"
    assert max(growth.values()) < 60 * 1000 * 1000, \
        f"worker RSS grew by {max(growth.values()) / MiB:.0f} MiB (MiB before, peak): {report}"


# --- 5. client disconnect mid-upload (API.md §7.5, streaming.py) ----------------------------


def _abandoned_put(server: Server, target: str, *, reset: bool) -> None:
    """PUT announcing 10 MiB, send 1 MiB, then close (FIN) or abort (RST)."""
    head = (f"PUT {target} HTTP/1.1\r\nHost: {server.host}\r\n"
            f"Authorization: Bearer {server.alice_key}\r\nContent-Length: {10 * MiB}\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    sock = socket.create_connection((server.host, server.port), timeout=TIMEOUT)
    try:
        sock.sendall(head)
        sock.sendall(os.urandom(MiB))
        time.sleep(0.3)  # let the server start streaming into its temp file
        if reset:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        sock.close()


@pytest.mark.blackbox
@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst"])
def test_client_disconnect_mid_upload_stores_nothing(server: Server, reset: bool):
    s = server.session()
    new_path = f"disconnect/new-{'rst' if reset else 'fin'}.bin"
    old_path = f"disconnect/old-{'rst' if reset else 'fin'}.bin"
    old_body = b"the old content\n" * 1000
    assert s.put(server.url(old_path), data=old_body, timeout=TIMEOUT).status_code == 201

    _abandoned_put(server, server.raw_target(new_path), reset=reset)
    _abandoned_put(server, server.raw_target(old_path), reset=reset)

    left = wait_no_tmp_leftovers(server)
    assert not left, f"temp files left under {server.data_dir / 'tmp'}: {left}"
    missing = s.get(server.url(new_path), timeout=TIMEOUT)
    assert_error(missing, 404, "FILE_NOT_FOUND")
    kept = s.get(server.url(old_path), timeout=TIMEOUT)
    assert kept.status_code == 200
    assert kept.content == old_body
    assert kept.headers["X-CallFS-Size"] == str(len(old_body))

    # Nothing stays locked: both paths accept a complete upload right away.
    started = time.monotonic()
    assert s.put(server.url(new_path), data=b"now", timeout=TIMEOUT).status_code == 201
    assert s.put(server.url(old_path), data=b"new", timeout=TIMEOUT).status_code == 200
    assert time.monotonic() - started < 5
    assert get_bytes(s, server.url(old_path)) == b"new"


# --- 6./7. concurrency (API.md §7.6, §11.4) -------------------------------------------------


def _run_concurrently(count: int, work) -> list:
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def run(index: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[index] = work(index)
        except BaseException as exc:  # reported by the caller
            results[index] = exc

    run_in_threads(*(partial(run, i) for i in range(count)), timeout=90)
    return results


@pytest.mark.blackbox
def test_concurrent_puts_to_one_path_end_with_exactly_one_body(server: Server):
    url = server.url("concurrent/put-same.bin")
    bodies = [bytes([i]) * 1024 + os.urandom(255 * 1024) for i in range(8)]

    def put(index: int) -> int:
        with server.session() as s:
            return s.put(url, data=bodies[index], timeout=60).status_code

    statuses = _run_concurrently(8, put)
    assert all(status in (200, 201) for status in statuses), statuses
    assert statuses.count(201) <= 1, statuses
    s = server.session()
    final = get_bytes(s, url)
    assert final in bodies, "the final content is not any single writer's body"
    head = s.head(url, timeout=TIMEOUT)
    assert head.headers["X-CallFS-Size"] == str(256 * 1024) == str(len(final))
    assert head.headers["ETag"] == f'"{hashlib.sha256(final).hexdigest()}"'


@pytest.mark.blackbox
def test_concurrent_posts_of_one_path_exactly_one_wins(server: Server):
    url = server.url("concurrent/post-same.bin")
    bodies = [f"body of writer {i}\n".encode() * 100 for i in range(6)]

    def post(index: int) -> int:
        with server.session() as s:
            return s.post(url, data=bodies[index], timeout=60).status_code

    statuses = _run_concurrently(6, post)
    assert sorted(statuses) == [201, 409, 409, 409, 409, 409], statuses
    winner = statuses.index(201)
    assert get_bytes(server.session(), url) == bodies[winner]


@pytest.mark.blackbox
@pytest.mark.parametrize("existing_dir", [True, False], ids=["existing-dir", "implicit-dir"])
def test_concurrent_posts_of_different_files_in_one_directory(server: Server,
                                                              existing_dir: bool):
    directory = "concurrent/many-existing" if existing_dir else "concurrent/many-new/a/b"
    s = server.session()
    if existing_dir:
        assert s.post(server.url(directory + "/"), timeout=TIMEOUT).status_code == 201

    def post(index: int) -> int:
        with server.session() as session:
            return session.post(server.url(f"{directory}/file-{index}.txt"),
                                data=f"file {index}".encode(), timeout=60).status_code

    statuses = _run_concurrently(5, post)
    assert statuses == [201] * 5, statuses
    for i in range(5):
        assert get_bytes(s, server.url(f"{directory}/file-{i}.txt")) == f"file {i}".encode()
    listing = s.get(f"{server.base_url}/v1/directories{server.prefix}/{directory}",
                    timeout=TIMEOUT)
    assert listing.status_code == 200
    names = sorted(item["name"] for item in listing.json()["items"])
    assert names == [f"file-{i}.txt" for i in range(5)]


# --- 8. hostile input over the wire (API.md §4.3, §15, §16.1) -------------------------------


INVALID_TARGETS = [
    "/v1/files/..%2F..%2Fetc%2Fpasswd",
    "/v1/files/..%2f..%2f..%2f..%2fetc%2fpasswd",
    "/v1/files/../../etc/passwd",
    "/v1/files/%2e%2e/%2e%2e/etc/passwd",
    "/v1/files/a/../../etc/passwd",
    "/v1/files/a%00b",
    "/v1/files/a%5Cb",
    "/v1/files/..%5C..%5Cetc%5Cpasswd",
    "/v1/directories/..%2F..%2Fetc",
]


@pytest.mark.blackbox
@pytest.mark.parametrize("target", INVALID_TARGETS)
def test_hostile_paths_are_400_invalid_path(server: Server, target: str):
    # /v1/directories answers GET only (HEAD there is 405, API.md §1).
    methods = ("GET", "HEAD") if target.startswith("/v1/files/") else ("GET",)
    for method in methods:
        response = raw_get(server, target, method=method)
        assert response.status == 400, (method, response.raw[:500])
        assert b"root:" not in response.body
        if method == "GET":
            assert response.headers["content-type"].startswith("application/json")
            assert response.json()["code"] == "INVALID_PATH", response.body


@pytest.mark.blackbox
@pytest.mark.parametrize("target", [
    "/v1/files/..%2F..%2Fcallfs-escape-{token}",
    "/v1/files/a%00b-{token}",
    "/v1/files/a%5Cb-{token}",
])
@pytest.mark.parametrize("method", ["PUT", "POST"])
def test_hostile_paths_never_write(server: Server, target: str, method: str):
    token = os.urandom(4).hex()
    response = raw_get(server, target.format(token=token), method=method, body=b"pwned")
    assert response.status == 400, response.raw[:500]
    assert response.json()["code"] == "INVALID_PATH"
    parent = server.data_dir.parent
    assert not list(parent.rglob(f"*{token}*")), "a file named after the request appeared"


@pytest.mark.blackbox
@pytest.mark.parametrize("target", [
    "/v1/files/" + "a" * 6000,
    "/v1/files/" + "ab/" * 2000,
])
def test_overlong_paths_are_400(server: Server, target: str):
    response = raw_get(server, target)
    assert response.status == 400, response.raw[:500]
    assert response.json()["code"] == "INVALID_PATH", response.body
    assert b"root:" not in response.body


@pytest.mark.blackbox
@pytest.mark.parametrize("case", ["huge-header-file", "huge-header-health", "huge-auth",
                                  "bad-escape", "non-utf8-get", "non-utf8-post",
                                  "nul-in-request-line", "control-chars"])
def test_hostile_requests_never_5xx(server: Server, case: str):
    s = server.session()
    existing = "hostile/exists.txt"
    s.put(server.url(existing), data=b"exists", timeout=TIMEOUT)
    junk = "x" * 20_000
    if case == "huge-header-file":
        response = raw_get(server, server.raw_target(existing), extra=f"X-Junk: {junk}\r\n")
    elif case == "huge-header-health":
        response = raw_get(server, "/health", extra=f"X-Junk: {junk}\r\n")
    elif case == "huge-auth":
        response = raw_get(server, server.raw_target(existing), key=junk)
    elif case == "bad-escape":
        response = raw_get(server, server.raw_target("bad%zzescape"))
    elif case == "non-utf8-get":
        response = raw_get(server, server.raw_target("%ff%fe%fd"))
    elif case == "non-utf8-post":
        response = raw_get(server, server.raw_target("%ff%fe.bin"), method="POST", body=b"x")
    elif case == "nul-in-request-line":
        response = raw_http(server, f"GET {server.raw_target('a')}\x00b HTTP/1.1\r\n"
                            f"Host: x\r\nConnection: close\r\n\r\n".encode())
    else:
        response = raw_get(server, server.raw_target("a%01%1b%7f"))
    assert response.status < 500, response.raw[:500]
    assert b"root:" not in response.body
    if case == "huge-auth":
        assert response.status in (400, 401, 431), response.raw[:500]
    if case == "control-chars":
        assert response.status == 400
        assert response.json()["code"] == "INVALID_PATH"


# --- 10. authentication over the wire (API.md §3.1) -----------------------------------------


@pytest.mark.blackbox
def test_authentication(server: Server):
    url = f"{server.base_url}/v1/directories/"
    expected = {"code": "AUTHENTICATION_FAILED", "message": "authentication failed"}
    for headers in ({}, {"Authorization": "Bearer wrong-key-0123456789abcdef"},
                    {"Authorization": "Bearer "}, {"Authorization": f"bearer {server.alice_key}"},
                    {"Authorization": f"Bearer {server.alice_key}x"}):
        response = requests.get(url, headers=headers, timeout=TIMEOUT)
        assert response.status_code == 401, (headers, response.status_code)
        assert response.headers["Content-Type"].startswith("application/json")
        assert response.json() == expected
        assert response.content == \
            b'{"code":"AUTHENTICATION_FAILED","message":"authentication failed"}'
    missing_file = requests.get(server.url("nowhere.txt"), timeout=TIMEOUT)
    assert missing_file.status_code == 401
    assert missing_file.json()["code"] == "AUTHENTICATION_FAILED"

    for key in (server.alice_key, server.bob_key):
        response = requests.get(url, headers=server.auth(key), timeout=TIMEOUT)
        assert response.status_code == 200, response.text[:300]
    alice = server.session(server.alice_key)
    assert alice.put(server.url("auth/mine.txt"), data=b"mine", timeout=TIMEOUT).status_code \
        == 201
    head = alice.head(server.url("auth/mine.txt"), timeout=TIMEOUT)
    assert head.headers["X-CallFS-Owner"] == "alice"
    # bob may read alice's file but not overwrite it (API.md §3.3, §16.2).
    bob = server.session(server.bob_key)
    assert get_bytes(bob, server.url("auth/mine.txt")) == b"mine"
    assert_error(bob.put(server.url("auth/mine.txt"), data=b"bob", timeout=TIMEOUT), 403,
                 "PERMISSION_DENIED")


def test_every_worker_sees_each_change_at_once(server: Server):
    """Each serving thread keeps the rows it looked up until the database changes (the SQLite
    read cache): after every change made through one connection, fresh connections, which land
    on any worker and thread, all see it. 24 answers per state reach the eight threads."""
    alice = server.session(server.alice_key)
    directory, moved = server.url("seen/"), server.url("seen-moved/")

    def answers(key: str, url: str, method: str = "GET") -> set[tuple[int, bytes | str]]:
        """(status, the body or the error code) of 24 requests, each on a new connection."""
        found = set()
        for _ in range(24):
            response = requests.request(method, url, headers=server.auth(key), timeout=TIMEOUT)
            ok = response.status_code == 200 or method == "HEAD"
            found.add((response.status_code, response.content if ok else response.json()["code"]))
        return found

    path = directory + "file.txt"
    assert alice.put(path, data=b"one", timeout=TIMEOUT).status_code == 201
    assert answers(server.bob_key, path) == {(200, b"one")}
    assert alice.put(path, data=b"two", timeout=TIMEOUT).status_code == 200
    assert answers(server.bob_key, path) == {(200, b"two")}
    assert alice.patch(path, json={"mode": "0600"}, timeout=TIMEOUT).status_code == 200
    denied = {(403, "PERMISSION_DENIED")}
    assert answers(server.bob_key, path) == denied
    assert answers(server.alice_key, path) == {(200, b"two")}
    assert alice.patch(directory, json={"mode": "0700"}, timeout=TIMEOUT).status_code == 200
    assert alice.patch(path, json={"mode": "0644"}, timeout=TIMEOUT).status_code == 200
    assert answers(server.bob_key, path) == denied  # no x on the directory now
    assert alice.patch(directory, json={"mode": "0755"}, timeout=TIMEOUT).status_code == 200
    assert answers(server.bob_key, path) == {(200, b"two")}
    assert alice.patch(directory, json={"name": "seen-moved"},
                       timeout=TIMEOUT).status_code == 200
    assert answers(server.bob_key, path) == {(404, "FILE_NOT_FOUND")}
    assert answers(server.bob_key, moved + "file.txt") == {(200, b"two")}
    assert alice.delete(moved + "file.txt", timeout=TIMEOUT).status_code == 204
    assert answers(server.bob_key, moved + "file.txt", "HEAD") == {(404, b"")}


# --- keep-alive after a download (RFC 9112 §9.3; API.md §7.3) --------------------------------


def _read_one_response(sock: socket.socket) -> RawResponse | None:
    """Read exactly one response with a Content-Length body; None if the server closed first."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(_parse_response(head + b"\r\n\r\n").headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        body += chunk
    return _parse_response(head + b"\r\n\r\n" + body)


@pytest.mark.blackbox
@pytest.mark.parametrize("range_header", ["", "Range: bytes=0-\r\n", "Range: bytes=1000-\r\n"],
                         ids=["whole", "range-from-0", "range-from-1000"])
def test_connection_stays_usable_after_a_file_download(server: Server, range_header: str):
    """HTTP/1.1 keeps the connection open: a file GET must not tear it down afterwards."""
    body = os.urandom(300_000)
    path = f"keepalive/file-{len(range_header)}.bin"
    assert server.session().put(server.url(path), data=body, timeout=TIMEOUT).status_code == 201
    get = (f"GET {server.raw_target(path)} HTTP/1.1\r\nHost: {server.host}\r\n"
           f"Authorization: Bearer {server.alice_key}\r\n{range_header}\r\n").encode()
    health = f"GET /health HTTP/1.1\r\nHost: {server.host}\r\n\r\n".encode()
    with socket.create_connection((server.host, server.port), timeout=TIMEOUT) as sock:
        sock.sendall(get)
        first = _read_one_response(sock)
        assert first is not None, "no complete answer to the GET"
        assert first.status in (200, 206)
        start = 1000 if "1000" in range_header else 0
        assert first.body == body[start:]
        assert first.headers.get("connection", "").lower() != "close"
        try:
            sock.sendall(health)
            second = _read_one_response(sock)
        except (BrokenPipeError, ConnectionResetError):
            second = None
        assert second is not None, \
            "the server closed the keep-alive connection after a file download"
        assert second.status == 200


@pytest.mark.blackbox
def test_keep_alive_session_downloads_and_uploads(server: Server):
    """A real client reusing its connection: upload, download, repeat."""
    s = server.session(keep_alive=True)
    body = os.urandom(64 * 1024)
    url = server.url("keepalive/session.bin")
    assert s.put(url, data=body, timeout=TIMEOUT).status_code == 201
    for i in range(10):
        assert get_bytes(s, url) == body, i
        assert s.put(url, data=body, timeout=TIMEOUT).status_code == 200, i


def test_busy_keep_alive_connections_are_all_served(server: Server):
    """Many busy keep-alive connections, more than the workers' threads: each thread serves
    whichever connection the kernel wakes it for, and every connection makes progress."""
    url = server.url("keepalive/shared.bin")
    body = os.urandom(4096)
    assert server.session(keep_alive=True).put(url, data=body, timeout=TIMEOUT).ok
    slowest: list[float] = []
    failures: list[str] = []

    def client() -> None:
        session = server.session(keep_alive=True)
        for _ in range(40):
            started = time.monotonic()
            response = session.get(url, timeout=TIMEOUT)
            slowest.append(time.monotonic() - started)
            if response.status_code != 200 or response.content != body:
                failures.append(f"{response.status_code} {len(response.content)}")

    run_in_threads(*[client] * 12)  # 2 workers x 2 threads, three times over
    assert failures == []
    assert len(slowest) == 12 * 40
    assert max(slowest) < 5, max(slowest)  # no connection starves behind another


# --- 9. the server survived all of the above ------------------------------------------------


@pytest.mark.blackbox
def test_server_survives(server: Server):
    response = requests.get(f"{server.base_url}/health", timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert os.path.exists(f"/proc/{server.pid}"), "the gunicorn master is gone"
    assert server.workers() == server.initial_workers, \
        f"workers were replaced (a crash?): {server.initial_workers} -> {server.workers()}\n" \
        f"{server.log()}"
    left = wait_no_tmp_leftovers(server)
    assert not left, f"temp files left: {left}"


@pytest.mark.blackbox
def test_server_log_has_no_errors(server: Server):
    """Nothing above should have made the server log an error or a traceback."""
    log = server.log_path.read_text(errors="replace")
    bad = [line for line in log.splitlines() if "Traceback" in line or "[ERROR]" in line
           or " ERROR " in line or "CRITICAL" in line]
    first = log.find(bad[0]) if bad else 0
    assert not bad, f"{len(bad)} error lines; the first one in context:\n{log[first:first + 2500]}"


# --- gunicorn workers: one per CPU, pinned, each with its own listening socket --------------------

def test_workers_are_pinned_to_different_cpus(server: Server):
    workers = server.workers()
    cpus = sorted(os.sched_getaffinity(0))
    pinned = [os.sched_getaffinity(pid) for pid in workers]
    assert all(len(allowed) == 1 for allowed in pinned), pinned
    assert len({next(iter(allowed)) for allowed in pinned}) == min(len(workers), len(cpus))


def _unpinned_threads(workers: list[int], cpus: set[int]) -> list[int]:
    found = []
    for pid in workers:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                if os.sched_getaffinity(int(task.name)) == cpus:
                    found.append(int(task.name))
            except ProcessLookupError:  # a thread that just ended
                pass
    return found


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
def test_a_large_upload_hashes_and_writes_off_the_pinned_cpu(server: Server):
    """Its hashing and writing run on pool threads that leave the worker's pin while the event
    loop, pinned, keeps receiving: pinned, the three stages took turns on one core
    (callfs_site.offload, callfs_site.cpus)."""
    cpus = set(os.sched_getaffinity(0))
    workers = server.workers()
    body = os.urandom(16 * MiB)
    head = (f"PUT {server.raw_target('pinning/large.bin')} HTTP/1.1\r\nHost: {server.host}\r\n"
            f"Authorization: Bearer {server.alice_key}\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n").encode()
    with socket.create_connection((server.host, server.port), timeout=TIMEOUT) as sock:
        sock.sendall(head + body[:8 * MiB])  # past the inline part (PIPELINE_AFTER)
        deadline = time.monotonic() + 10
        while len(helpers := _unpinned_threads(workers, cpus)) < 2 and \
                time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(helpers) >= 2, helpers
        assert not set(workers) & set(helpers)  # each event loop (the main thread) stays pinned
        sock.sendall(body[8 * MiB:])
        response = _parse_response(_read_all(sock))
    assert response.status == 201, response
    assert get_bytes(server.session(), server.url("pinning/large.bin")) == body
    assert not set(workers) & set(_unpinned_threads(workers, cpus))


def test_each_worker_listens_on_its_own_socket(server: Server):
    """SO_REUSEPORT: the kernel spreads new connections over one listening socket per worker
    (a single shared socket let one worker take a whole burst of keep-alive connections)."""
    listening = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        if state == "0A" and int(local.split(":")[1], 16) == server.port:
            listening += 1
    assert listening == len(server.workers()) == 2


def _descriptors(pid: int) -> list[str]:
    found = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            found.append(os.readlink(fd))
        except OSError:  # closed meanwhile
            pass
    return found


def test_a_closed_client_connection_leaves_no_database_handle_behind(server: Server):
    """Each client connection is a greenlet with Django's connections of its own: they close
    with it (SQLite kept its writer-lock descriptor and page cache until a garbage collection:
    50 PUTs on 50 connections left 51 descriptors open)."""
    def database_handles() -> int:
        return sum(target.endswith((".writers", ".sqlite3", "-wal", "-shm"))
                   or "socket:" in target for pid in server.workers()
                   for target in _descriptors(pid))

    for number in range(5):  # warm: each worker's own connections, pools and slots
        assert server.session().put(server.url(f"fds/warm{number}"), data=b"x",
                                    timeout=TIMEOUT).status_code in (200, 201)
    time.sleep(0.5)
    before = database_handles()
    for number in range(50):
        assert server.session().put(server.url(f"fds/f{number}"), data=b"x",
                                    timeout=TIMEOUT).status_code == 201
    time.sleep(0.5)
    assert database_handles() <= before + 4

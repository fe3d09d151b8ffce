"""callfs_site.workers.GeventWorker under a real gunicorn, on raw sockets.

A bare WSGI app (tests/worker_app.py) keeps each case about the worker: keep-alive, slow and
silent clients, pipelining, the connection cap, idle timeouts, zero-copy files and the graceful
stop.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from functools import partial
from pathlib import Path

import pytest

from tests.helpers import run_in_threads
from tests.servers import free_port
from tests.worker_app import file_bytes as worker_app_file_bytes

# Nothing here touches a database, storage or a fast path: make test runs it in one pass.
pytestmark = pytest.mark.one_pass

ROOT = Path(__file__).resolve().parent.parent
WORKER = "callfs_site.workers.GeventWorker"
# gunicorn reads request heads with its C parser (gunicorn_h1c, in requirements.txt) and falls
# back to its Python parser where that is not installed: what depends on parsing runs on both.
PARSERS = ["fast", "python"]
IDLE_ONE_SECOND = "def post_fork(server, worker):\n    worker.idle_timeout = 1\n"


class Client:
    """One connection, read through a buffer: pipelined responses may arrive in one recv."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buffer = b""

    def send(self, path: str, body: bytes = b"") -> None:
        head = (f"{'POST' if body else 'GET'} {path} HTTP/1.1\r\nHost: test\r\n"
                f"Content-Length: {len(body)}\r\n\r\n")
        self.sock.sendall(head.encode() + body)

    def _read_more(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed by the server; unread: {self.buffer!r}")
        self.buffer += chunk

    def receive(self) -> tuple[str, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buffer:
            self._read_more()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status, *lines = head.decode().split("\r\n")
        headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
        length = int(headers["content-length"])
        while len(self.buffer) < length:
            self._read_more()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return status, headers, body

    def request(self, path: str, body: bytes = b"") -> bytes:
        self.send(path, body)
        status, _, content = self.receive()
        assert status.startswith("HTTP/1.1 200"), status
        return content

    def closed_by_server(self, within: float) -> bool:
        self.sock.settimeout(within)
        try:
            return self.sock.recv(1) == b""
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True
        finally:
            self.sock.settimeout(10)

    def nothing_within(self, seconds: float) -> bool:
        """Neither an answer nor a close arrives for `seconds`."""
        self.sock.settimeout(seconds)
        try:
            self._read_more()
        except TimeoutError:
            return True
        except ConnectionError:
            return False
        finally:
            self.sock.settimeout(10)
        return False

    def close(self) -> None:
        self.sock.close()


class Gunicorn:
    def __init__(self, tmp_path: Path, *options: str, conf: str = "", http_parser: str = "fast"):
        self.port = free_port()
        self.tls = "--certfile" in options
        self.crashes_expected = False  # else a traceback in the log fails the test
        self.log_path = tmp_path / "gunicorn.log"
        empty_conf = tmp_path / "test.conf.py"  # not the project's gunicorn.conf.py
        empty_conf.write_text(conf)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(empty_conf), "--no-control-socket",
             "-k", WORKER, "-w", "1",
             "-b", f"127.0.0.1:{self.port}", "--graceful-timeout", "10",
             "--http-parser", http_parser, *options,
             "tests.worker_app:app"],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=self.log_path.open("wb"))
        deadline = time.monotonic() + 20
        while True:
            try:
                self.connect(tls=self.tls).request("/")
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(self.log()) from None
                time.sleep(0.05)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def connect(self, tls: bool = False) -> Client:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        if tls:
            context = ssl.create_default_context()
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
            sock = context.wrap_socket(sock)
        return Client(sock)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def http_parser() -> str:
    """gunicorn's parser for request heads; tests about parsing parametrize it over PARSERS."""
    return "fast"


@pytest.fixture
def start(tmp_path, http_parser):
    started: list[Gunicorn] = []

    def start(*options: str, conf: str = "") -> Gunicorn:
        started.append(Gunicorn(tmp_path, *options, conf=conf, http_parser=http_parser))
        return started[-1]

    yield start
    for server in started:
        server.stop()
        if not server.crashes_expected:
            assert "Traceback" not in server.log(), server.log()


def test_many_keep_alive_connections_are_all_served(start):
    server = start()
    conns = [server.connect() for _ in range(20)]
    for round_ in range(5):
        for number, sock in enumerate(conns):
            sock.send(f"/r{round_}/c{number}")
        for number, sock in enumerate(conns):  # answered on the right connection, in order
            assert sock.receive()[2].startswith(f"ok /r{round_}/c{number} ".encode())


def test_a_long_request_holds_up_no_other(start):
    server = start()
    slow = server.connect()
    slow.send("/slow?seconds=2")
    time.sleep(0.2)
    fast = server.connect()
    started = time.monotonic()
    for _ in range(20):
        fast.request("/fast")
    assert time.monotonic() - started < 1.5
    assert slow.receive()[2].startswith(b"ok /slow")


def test_silent_connections_hold_up_no_other(start):
    """Connections that send nothing (pre-connects, scanners) cost a greenlet each: a real
    request is still answered at once."""
    server = start()
    silent = [server.connect() for _ in range(6)]
    time.sleep(0.2)
    started = time.monotonic()
    assert server.connect().request("/now").startswith(b"ok /now")
    assert time.monotonic() - started < 1
    assert all(not sock.closed_by_server(0.01) for sock in silent)


@pytest.mark.parametrize("http_parser", PARSERS)
def test_request_heads_arriving_slowly_hold_up_no_other(start):
    """Slowloris: clients sending their request head a few bytes at a time wait for the rest
    of it; meanwhile the worker serves everyone else."""
    server = start()
    slow = [server.connect() for _ in range(50)]
    head = b"GET /slow-head HTTP/1.1\r\nHost: t\r\nX-A: " + b"a" * 50 + b"\r\n\r\n"
    for sock in slow:
        sock.sock.sendall(head[:10])
    time.sleep(0.2)
    started = time.monotonic()
    for i in range(10):
        assert server.connect().request(f"/now{i}").startswith(f"ok /now{i} ".encode())
    assert time.monotonic() - started < 1
    for offset in range(10, len(head), 7):  # the rest, in pieces
        for sock in slow:
            sock.sock.sendall(head[offset:offset + 7])
        time.sleep(0.01)
    for sock in slow:
        assert sock.receive()[2].startswith(b"ok /slow-head ")
        assert sock.request("/again").startswith(b"ok /again ")  # and it stays usable


@pytest.mark.parametrize("http_parser", PARSERS)
def test_a_partial_next_request_read_ahead_holds_up_no_other(start):
    """A complete request followed by the start of the next one, in one packet: the first is
    answered, and the rest waits for its end without holding up anyone."""
    server = start()
    partial = [server.connect() for _ in range(4)]
    for sock in partial:
        sock.sock.sendall(b"GET /first HTTP/1.1\r\nHost: t\r\n\r\nGET /second HTTP/1.1\r\nHo")
    for sock in partial:
        assert sock.receive()[2].startswith(b"ok /first ")
    started = time.monotonic()
    assert server.connect().request("/meanwhile").startswith(b"ok /meanwhile ")
    assert time.monotonic() - started < 1
    for sock in partial:
        sock.sock.sendall(b"st: t\r\n\r\n")
        assert sock.receive()[2].startswith(b"ok /second ")


OVERSIZED_HEADS = {
    # 9 KiB of header lines and no blank line: past 2 fields of 100 bytes and the request line
    "headers": b"GET /big HTTP/1.1\r\n" + (b"X-Pad: " + b"p" * 83 + b"\r\n") * 100,
    # past the request line's 4,094 bytes (gunicorn's default), far short of the whole head's
    "request line": b"GET /" + b"a" * 5000,  # and no line end
}


@pytest.mark.parametrize("http_parser", PARSERS)
@pytest.mark.parametrize("arrival", ["at once", "in pieces"])
@pytest.mark.parametrize("kind", OVERSIZED_HEADS)
def test_a_request_head_past_gunicorns_limits_is_refused_at_once(start, kind, arrival,
                                                                   http_parser):
    """Whether the head arrives in one piece or in several, it is refused without waiting for
    bytes never sent. The C parser measures a request line once it ends (an unfinished one
    waits for gunicorn's keep-alive deadline: the next test)."""
    server = start(*(("--limit-request-fields", "2", "--limit-request-field_size", "100")
                     if kind == "headers" else ()))
    sock = server.connect()
    head = OVERSIZED_HEADS[kind]
    if kind == "request line" and http_parser == "fast":
        head += b" HTTP/1.1\r\nHost: t"  # the line ended, the head did not
    step = len(head) if arrival == "at once" else 92
    for offset in range(0, len(head), step):
        sock.sock.sendall(head[offset:offset + step])
    sock.sock.settimeout(5)
    status, headers, body = sock.receive()
    expected, code = ("431", "HEADERS_TOO_LARGE") if kind == "headers" else ("414", "URI_TOO_LONG")
    assert status.startswith(f"HTTP/1.1 {expected}"), status
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["code"] == code


@pytest.mark.parametrize("head", [
    b"GET\r\n\r\n",  # no target, no version
    b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",  # a space in a field name
    b"GET / HTTP/9.9\r\nHost: t\r\n\r\n",
])
@pytest.mark.parametrize("http_parser", PARSERS)
def test_a_malformed_request_is_refused_in_the_apis_error_shape(start, head):
    """gunicorn refuses these before the application runs; the answer is still the API's
    `{"code", "message"}`, not gunicorn's HTML page, and the connection is closed."""
    sock = start().connect()
    sock.sock.sendall(head)
    sock.sock.settimeout(5)
    status, headers, body = sock.receive()
    assert status.startswith("HTTP/1.1 400"), status
    assert headers["content-type"] == "application/json"
    error = json.loads(body)
    assert error["code"] == "INVALID_REQUEST" and error["message"], error
    assert sock.closed_by_server(5)


def test_an_application_crash_is_a_500_in_the_apis_error_shape_without_internals(start):
    """The client gets the fixed text; the operator gets the traceback in the log."""
    server = start()
    server.crashes_expected = True
    sock = server.connect()
    sock.send("/crash")
    sock.sock.settimeout(5)
    status, headers, body = sock.receive()
    assert status.startswith("HTTP/1.1 500"), status
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {"code": "INTERNAL_ERROR", "message": "an internal error occurred"}
    server.stop()
    assert "secret-internal-detail" in server.log()


@pytest.mark.parametrize("http_parser", PARSERS)
def test_a_request_head_that_never_completes_is_closed(start):
    """gunicorn's keep-alive time bounds the whole wait for a head, not each byte of it."""
    server = start("--keep-alive", "1")
    sock = server.connect()
    sock.sock.sendall(b"GET /never HTTP/1.1\r\nHost:")
    assert not sock.closed_by_server(0.5)
    sock.sock.sendall(b" t")  # trickling on does not buy more time
    assert sock.closed_by_server(3)


@pytest.mark.parametrize("http_parser", PARSERS)
def test_pipelined_requests_are_all_answered(start):
    server = start()
    sock = server.connect()
    sock.sock.sendall(b"".join(f"GET /p{i} HTTP/1.1\r\nHost: t\r\n\r\n".encode()
                               for i in range(3)))
    for i in range(3):
        assert sock.receive()[2].startswith(f"ok /p{i} ".encode())


@pytest.fixture
def tls_options(tmp_path) -> tuple[str, ...]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return "--certfile", str(cert), "--keyfile", str(key)


@pytest.mark.parametrize("http_parser", PARSERS)
def test_pipelined_requests_over_tls(start, tls_options):
    """TLS decrypts ahead: a request that arrived in the same TLS record as the one before it
    sits in the TLS buffer, where the socket's readiness cannot show it. It is served at once."""
    server = start(*tls_options)
    sock = server.connect(tls=True)

    def request(path: str, size: int = 0) -> bytes:
        head = f"GET {path} HTTP/1.1\r\nHost: t\r\nX-Padding: "
        padding = size - len(head) - 4 if size else 1
        return f"{head}{'p' * padding}\r\n\r\n".encode()

    for round_ in range(3):
        # The first request fills exactly one of gunicorn's 8 KiB reads, so the second is left
        # whole in the TLS buffer (both travel in one TLS record).
        sock.sock.sendall(request(f"/a{round_}", 8192) + request(f"/b{round_}"))
        assert sock.receive()[2].startswith(f"ok /a{round_} ".encode())
        assert sock.receive()[2].startswith(f"ok /b{round_} ".encode())


def test_broken_tls_handshakes_leave_the_worker_whole(start, tls_options):
    """Health checks that open a TLS port and hang up mid-handshake: the worker serves everyone
    else meanwhile, and stops at once afterwards (no connection left counted in)."""
    server = start(*tls_options)
    failures: list[str] = []

    def hang_ups() -> None:
        for _ in range(300):
            try:
                with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
                    sock.sendall(b"\x16\x03\x01\x00")  # the start of a ClientHello
            except OSError as exc:
                failures.append(repr(exc))

    def requests() -> None:
        try:
            sock = server.connect(tls=True)
            for i in range(100):
                assert sock.request(f"/r{i}").startswith(f"ok /r{i} ".encode())
        except (OSError, AssertionError) as exc:
            failures.append(repr(exc))

    run_in_threads(hang_ups, hang_ups, requests, requests)
    assert failures == []
    assert server.connect(tls=True).request("/after").startswith(b"ok /after")
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=15) == 0
    assert time.monotonic() - started < 5  # every connection was counted out


def test_unread_body_is_drained_before_the_next_request(start):
    server = start()
    sock = server.connect()
    sock.send("/ignores-body", b"x" * 50_000)  # gunicorn drains up to 64 KiB, then closes
    assert sock.receive()[2].startswith(b"ok /ignores-body")
    assert sock.request("/echo", b"y" * 10) == b"10"


@pytest.mark.parametrize("http_parser", PARSERS)
def test_a_body_read_in_with_its_head_reaches_the_app_whole_and_in_order(start):
    """Body bytes that arrive with the head are given to the app before the rest from the
    socket, and a pipelined request after them."""
    server = start()
    sock = server.connect()
    body = b"".join(n.to_bytes(4, "big") for n in range(25_600))  # 100 KiB, a counter
    sock.sock.sendall(f"POST /digest HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}\r\n"
                      f"\r\n".encode() + body + b"GET /after HTTP/1.1\r\nHost: t\r\n\r\n")
    assert sock.receive()[2] == hashlib.sha256(body).hexdigest().encode()
    assert sock.receive()[2].startswith(b"ok /after ")


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
@pytest.mark.parametrize("piece", [-1, 1000, 64 * 1024, 64 * 1024 + 1, 1024 * 1024])
def test_a_large_body_read_in_pieces_arrives_whole_and_in_order(start, tls_options, piece, tls):
    """Reads of any size, with body bytes that came with the head and a pipelined request
    behind the body: the app sees every byte once, in order."""
    server = start(*(tls_options if tls else ()))
    sock = server.connect(tls=tls)
    body = b"".join(n.to_bytes(4, "big") for n in range(800_000))  # 3.1 MB, a counter
    head = f"POST /digest?piece={piece} HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}\r\n\r\n"
    sent = head.encode() + body + b"GET /after HTTP/1.1\r\nHost: t\r\n\r\n"
    for start_at in range(0, len(sent), 200_003):  # in uneven pieces, some straddling the head
        sock.sock.sendall(sent[start_at:start_at + 200_003])
        time.sleep(0.001)
    assert sock.receive()[2] == hashlib.sha256(body).hexdigest().encode()
    assert sock.receive()[2].startswith(b"ok /after ")


def test_a_direct_read_takes_exactly_what_it_asks_for():
    from callfs_site.workers import DIRECT_READ_BYTES, DirectReadUnreader

    class CountingSocket:
        def __init__(self, sock):
            self.sock, self.recvs = sock, []

        def recv(self, size):
            data = self.sock.recv(size)
            self.recvs.append((size, len(data)))
            return data

    client, server = socket.socketpair()
    with client, server:
        counting = CountingSocket(server)
        unreader = DirectReadUnreader(counting)
        unreader.unread(b"a" * 100)  # left over from the head
        size = DIRECT_READ_BYTES * 2
        client.sendall(b"b" * (size - 100) + b"c" * 10)
        assert unreader.read(size) == b"a" * 100 + b"b" * (size - 100)
        assert all(asked <= size - 100 for asked, _ in counting.recvs)  # never past the piece
        assert unreader.buf.getvalue() == b""  # nothing read ahead
        client.shutdown(socket.SHUT_WR)
        assert unreader.read(size) == b"c" * 10  # the body ended early: what there is
        assert unreader.read(size) == b""


@pytest.mark.parametrize("http_parser", PARSERS)
def test_request_parsers_read_through_the_direct_reader(start):
    server = start()
    sock = server.connect()
    body = os.urandom(3 * 1024 * 1024)
    sock.sock.sendall(f"POST /unreader HTTP/1.1\r\nHost: t\r\n"
                      f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    assert sock.receive()[2] == f"DirectReadUnreader {len(body)}".encode()


def test_client_closing_mid_request_costs_nothing(start):
    server = start()
    for _ in range(10):
        sock = server.connect()
        sock.sock.sendall(b"GET /half HTTP/1.1\r\nHost: te")
        sock.close()
    assert server.connect().request("/after").startswith(b"ok /after")


def test_idle_keep_alive_connections_are_closed_after_the_timeout(start):
    server = start("--keep-alive", "1")
    sock = server.connect()
    sock.request("/once")
    assert not sock.closed_by_server(0.3)
    assert sock.closed_by_server(3)


def test_connection_cap_pauses_accepting_until_one_closes(start):
    server = start("--worker-connections", "3")
    silent = [server.connect() for _ in range(3)]  # accepted, waiting for a first request
    time.sleep(0.2)
    waiting = server.connect()  # the kernel completes the handshake; the worker must not accept
    waiting.send("/waiting")
    assert waiting.nothing_within(0.5)
    silent.pop().close()
    assert waiting.receive()[2].startswith(b"ok /waiting")


def test_graceful_stop_finishes_the_request_in_flight(start):
    server = start()
    sock = server.connect()
    sock.send("/slow?seconds=1")
    time.sleep(0.2)
    idle = server.connect()
    idle.request("/idle")
    server.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    # A request on an idle connection during the stop is still answered, then the connection
    # closes (the client may have sent it before it saw the stop).
    idle.send("/during-stop")
    status, headers, body = idle.receive()
    assert body.startswith(b"ok /during-stop") and headers["connection"] == "close"
    assert idle.closed_by_server(5)
    assert sock.receive()[2].startswith(b"ok /slow")
    assert sock.closed_by_server(5)
    assert server.proc.wait(timeout=15) == 0


def test_many_clients_at_once(start):
    server = start()
    failures: list[str] = []

    def client(number: int) -> None:
        try:
            sock = server.connect()
            for i in range(50):
                body = f"{number}-{i}".encode() * 10
                if sock.request("/echo", body) != str(len(body)).encode():
                    failures.append(f"{number}/{i}")
            sock.close()
        except OSError as exc:
            failures.append(repr(exc))

    run_in_threads(*(partial(client, n) for n in range(16)))
    assert failures == []


# --- responses: a small whole body goes out with its head -----------------------------------


class _Recorder:
    """Stands in for the client socket: what each sendall() carried."""

    def __init__(self):
        self.sends: list[bytes] = []

    def sendall(self, data) -> None:
        self.sends.append(bytes(data))


def _respond(monkeypatch, create, method: str, chunks: list[bytes], length: int) -> list[bytes]:
    """The sends of one response written by gunicorn's code with `create`'s response class."""
    from gunicorn.config import Config
    from gunicorn.http import wsgi
    from gunicorn.http.parser import RequestParser

    monkeypatch.setattr(wsgi.util, "http_date", lambda *_: "Thu, 03 Dec 2026 12:00:00 GMT")
    client, server = socket.socketpair()
    with client, server:
        client.sendall(f"{method} /x HTTP/1.1\r\nHost: test\r\n\r\n".encode())
        cfg = Config()
        request = next(iter(RequestParser(cfg, server, ("127.0.0.1", 1))))
        recorder = _Recorder()
        response, _ = create(request, recorder, ("127.0.0.1", 1), ("127.0.0.1", 2), cfg)
        response.start_response("200 OK", [("Content-Length", str(length))])
        for chunk in chunks:
            response.write(chunk)
        response.close()
    return recorder.sends


@pytest.mark.parametrize(("method", "chunks", "sends"), [
    ("GET", [b"small body"], 1),
    ("GET", [b""], 1),
    ("GET", [b"x" * (64 * 1024)], 1),
    ("GET", [b"x" * (64 * 1024 + 1)], 2),  # large: the copy into one buffer would cost more
    ("GET", [b"in ", b"parts"], 3),  # a streamed body is not held back
    ("HEAD", [b"no body"], 1),
])
def test_a_small_whole_body_is_sent_with_the_head_and_the_bytes_are_gunicorns(
        monkeypatch, method, chunks, sends):
    from gunicorn.http import wsgi

    from callfs_site.workers import _PackedResponseWsgi

    length = sum(map(len, chunks))
    ours = _respond(monkeypatch, _PackedResponseWsgi().create, method, chunks, length)
    theirs = _respond(monkeypatch, wsgi.create, method, chunks, length)
    assert b"".join(ours) == b"".join(theirs)
    assert len(ours) == sends


def _tcp_pair() -> tuple[socket.socket, socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    return client, server


def _send_file(monkeypatch, create, path, method: str = "GET", pair=_tcp_pair
               ) -> tuple[bytes, list[int]]:
    """What the client receives for `path` sent by gunicorn's write_file with `create`'s
    response class over a `pair()` of sockets, and TCP_CORK as seen during each sendfile()
    (None on a unix socket)."""
    from gunicorn.config import Config
    from gunicorn.http import wsgi
    from gunicorn.http.parser import RequestParser

    monkeypatch.setattr(wsgi.util, "http_date", lambda *_: "Thu, 03 Dec 2026 12:00:00 GMT")
    client, server = pair()
    cork_during_sendfile = []  # one entry per sendfile() call on the socket (zero-copy)
    real_sendfile = os.sendfile

    def watched_sendfile(out_fd, in_fd, offset, count):
        if out_fd == server.fileno():
            cork_during_sendfile.append(
                server.getsockopt(socket.IPPROTO_TCP, socket.TCP_CORK)
                if server.family != socket.AF_UNIX else None)
        return real_sendfile(out_fd, in_fd, offset, count)

    monkeypatch.setattr(os, "sendfile", watched_sendfile)
    received = bytearray()

    def receive() -> None:
        while data := client.recv(1 << 20):
            received.extend(data)

    receiver = threading.Thread(target=receive)
    with client, server, open(path, "rb") as file:
        client.sendall(f"{method} /x HTTP/1.1\r\nHost: test\r\n\r\n".encode())
        receiver.start()
        cfg = Config()
        request = next(iter(RequestParser(cfg, server, ("127.0.0.1", 1))))
        response, _ = create(request, server, ("127.0.0.1", 1), ("127.0.0.1", 2), cfg)
        response.start_response("200 OK", [("Content-Length", str(os.path.getsize(path)))])
        response.write_file(wsgi.FileWrapper(file))
        response.close()
        if server.family != socket.AF_UNIX:
            assert server.getsockopt(socket.IPPROTO_TCP, socket.TCP_CORK) == 0  # uncorked
        server.shutdown(socket.SHUT_WR)
        receiver.join()
    return bytes(received), cork_during_sendfile


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_a_file_goes_out_corked_and_the_bytes_are_gunicorns(monkeypatch, tmp_path, method):
    from gunicorn.http import wsgi

    from callfs_site.workers import _PackedResponseWsgi

    path = tmp_path / "file.bin"
    path.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    ours, our_corks = _send_file(monkeypatch, _PackedResponseWsgi().create, path, method)
    theirs, _ = _send_file(monkeypatch, wsgi.create, path, method)
    assert ours == theirs
    assert ours.endswith(path.read_bytes()) == (method == "GET")
    # Zero-copy (os.sendfile), corked throughout, as many calls as the socket buffer needed.
    assert (len(our_corks) > 0) == (method == "GET") and set(our_corks) <= {1}


def test_a_file_over_a_unix_socket_is_sent_as_gunicorn_sends_it(monkeypatch, tmp_path):
    """CALLFS_BIND=unix:...: there is no TCP_CORK to set."""
    from gunicorn.http import wsgi

    from callfs_site.workers import _PackedResponseWsgi

    path = tmp_path / "file.bin"
    path.write_bytes(os.urandom(256 * 1024))
    ours, our_corks = _send_file(monkeypatch, _PackedResponseWsgi().create, path,
                                 pair=socket.socketpair)
    theirs, _ = _send_file(monkeypatch, wsgi.create, path, pair=socket.socketpair)
    assert ours == theirs and ours.endswith(path.read_bytes())
    assert our_corks and set(our_corks) == {None}


# --- the idle timeout -------------------------------------------------------------------------


def test_a_body_that_stops_arriving_is_closed_after_the_idle_timeout(start):
    server = start(conf=IDLE_ONE_SECOND)
    sock = server.connect()
    sock.sock.sendall(b"POST /digest HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n"
                      + b"x" * 1000)
    started = time.monotonic()
    assert server.connect().request("/meanwhile").startswith(b"ok /meanwhile")
    assert sock.closed_by_server(5)
    assert 0.8 < time.monotonic() - started < 3
    assert "idle for 1" in server.log()


def test_a_download_whose_client_stops_reading_is_closed_after_the_idle_timeout(start):
    server = start(conf=IDLE_ONE_SECOND)
    sock = server.connect()
    sock.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.send("/file?size=67108864")  # 64 MiB: far more than both socket buffers hold
    time.sleep(0.2)
    assert server.connect().request("/meanwhile").startswith(b"ok /meanwhile")
    deadline = time.monotonic() + 10
    while not server.log().count("idle for 1") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "idle for 1" in server.log()


def test_a_slow_download_that_keeps_moving_is_never_cut(start):
    """Bytes every 0.1 s for longer than the idle timeout: one wait per byte, not per transfer."""
    server = start(conf=IDLE_ONE_SECOND)
    sock = server.connect()
    sock.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    size = 2 * 1024 * 1024
    sock.send(f"/file?size={size}")
    received = bytearray()
    started = time.monotonic()
    while len(received) < size + 100 and time.monotonic() - started < 30:
        chunk = sock.sock.recv(64 * 1024)
        if not chunk:
            break
        received += chunk
        time.sleep(0.1)
    head, _, body = bytes(received).partition(b"\r\n\r\n")
    assert time.monotonic() - started > 2  # it did outlast the timeout
    assert head.startswith(b"HTTP/1.1 200") and body == worker_app_file_bytes(size)


def test_settled_config_answers_as_gunicorns_config():
    """The fast path of gunicorn's settings (read once per worker) against gunicorn's Config:
    every setting, its properties, and the request parser and response built through both."""
    from gunicorn.config import Config
    from gunicorn.http import wsgi
    from gunicorn.http.parser import RequestParser

    from callfs_site.workers import SettledConfig

    config = Config()
    config.set("keepalive", 7)
    config.set("limit_request_fields", 50)
    settled = SettledConfig(config)
    for name in config.settings:
        assert getattr(settled, name) == getattr(config, name), name
    for name in ("is_ssl", "ssl_options", "sendfile", "reuse_port", "address", "uid",
                 "worker_class_str"):
        assert getattr(settled, name) == getattr(config, name), name
    raw = (b"GET /v1/files/a%20b?x=1 HTTP/1.1\r\nHost: h\r\nX-Forwarded-Proto: https\r\n"
           b"Authorization: Bearer k\r\n\r\n")
    answers = []
    for cfg in (config, settled):
        request = next(RequestParser(cfg, [raw], ("127.0.0.1", 1)))
        sent = []

        class Sink:
            def sendall(self, data, sent=sent):
                sent.append(bytes(data))

        response, environ = wsgi.create(request, Sink(), ("127.0.0.1", 1), ("127.0.0.1", 80),
                                        cfg)
        response.start_response("200 OK", [("Content-Length", "2")])
        response.write(b"ok")
        response.close()
        answers.append((request.method, request.path, request.headers,
                        {k: v for k, v in environ.items()
                         if isinstance(v, str | int | bool | tuple)},
                        b"".join(sent).split(b"\r\nDate: ")[0]))
    assert answers[0] == answers[1]

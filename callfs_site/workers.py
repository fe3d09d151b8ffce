"""gunicorn's stock gevent worker, and the three things it does not do for a file server.

Every connection is a greenlet (gunicorn.workers.ggevent): a slow client, a stalled one or a
long transfer costs a socket and a few kilobytes, never a thread, so a node holds thousands of
them (BENCHMARKS.md, "Slow clients"). What gunicorn and gevent do not provide is here:

- **An idle timeout** (`CALLFS_IDLE_TIMEOUT`): each client socket gets it as its timeout, so a
  read or write that waits longer than that for a single byte fails and the connection closes.
  A transfer that keeps moving, however slowly, is never cut. gunicorn's keep-alive deadline
  still bounds the wait for a request head.
- **Zero-copy downloads**: gevent's `socket.sendfile()` copies the file through Python in 8 KiB
  reads; `PackedResponse.sendfile` calls `os.sendfile()` on the non-blocking socket and waits
  for it to drain cooperatively, corked (nginx's `tcp_nopush`) so the file leaves in full
  segments.
- **Answers in the API's shape**: gunicorn's refusals of malformed requests (400, 414, 431...)
  are JSON `{"code", "message"}` instead of its HTML page, and a small response body goes out
  in the same send() as its head.

- **Request bodies without copies**: a large read of a body is received into its own buffers
  (DirectReadUnreader), not through gunicorn's read-ahead, which copied each upload several
  times over and slowed the rate at which a worker takes in a large upload (BENCHMARKS.md).

These reach gunicorn through the one place it builds HTTP/1 responses for this worker
(`base_async.wsgi.create`), its one error writer (`util.write_error`) and the one name its
HTTP/1 parser reads sockets through (`parser.SocketUnreader`), all set in `init_process`:
gunicorn has no hook for any of them. tests/test_worker.py compares the results with gunicorn's
own.

One more is a fast path, off in stock mode (callfs_site.fastpaths): `SettledConfig`, the
worker's settings read once instead of on every request.
"""

from __future__ import annotations

import contextlib
import io
import os
import socket
import ssl
import sys

import gevent
from gevent.socket import wait_write
from gunicorn import util
from gunicorn.http import parser, wsgi
from gunicorn.http.unreader import SocketUnreader
from gunicorn.workers import base_async, ggevent

from callfs_site.metrics import IDLE_CLOSES

# No Django import here: gunicorn's master imports this module, and django.db made before gevent
# patches threading keeps one real thread-local for its connections, shared by every greenlet.

# Bodies up to this size, complete in one piece, are sent with the response head.
SINGLE_SEND_BYTES = 64 * 1024
# Reads of a request body this large are received straight into their own buffer
# (DirectReadUnreader).
DIRECT_READ_BYTES = 64 * 1024


class SettledConfig:
    """gunicorn's `Config` with every setting read once, for a worker, whose settings no longer
    change: gunicorn sets them in the master before it forks. `Config.__getattr__` looks each
    one up through a Python call, and every request reads a few dozen (its parser most), which
    was a measurable part of a small request (BENCHMARKS.md, twelfth session). Properties
    (`is_ssl` kept too) and anything else come from the Config itself. Installed by
    gunicorn.conf.py's post_fork, unless CALLFS_STOCK=1 (callfs_site.fastpaths)."""

    def __init__(self, cfg):
        # A name the Config class defines itself (worker_class: the class, not its name) is
        # a property over the setting: asked of the Config, as before.
        values = {name: setting.get() for name, setting in cfg.settings.items()
                  if not hasattr(type(cfg), name)}
        self.__dict__.update(values, is_ssl=cfg.is_ssl, _config=cfg)

    def __getattr__(self, name: str):
        return getattr(self.__dict__["_config"], name)


class GeventWorker(ggevent.GeventWorker):
    """gunicorn's gevent worker with the idle timeout and the response changes above."""

    # Seconds without a byte moving before a connection is closed; gunicorn.conf.py sets it
    # from CALLFS_IDLE_TIMEOUT (post_fork).
    idle_timeout: float = 60.0

    def init_process(self):
        if "django.db" in sys.modules:
            raise RuntimeError("django.db was imported before gevent patched threading: every "
                               "greenlet would share one database connection")
        util.write_error = write_json_error
        base_async.wsgi = _PackedResponseWsgi()
        parser.SocketUnreader = DirectReadUnreader  # what HTTP/1 request parsers read through
        # Accepted sockets start with the default timeout: it bounds a stalled TLS handshake,
        # which gevent's server runs before handle() sees the connection.
        socket.setdefaulttimeout(self.idle_timeout)
        super().init_process()  # monkey-patches, then loads the application

    def patch(self):
        super().patch()
        # A TLS handshake runs in gevent's server before handle(): a client hanging up during
        # it (health checks, scanners) or stalling past the idle timeout ends that greenlet
        # with an SSLError or OSError, which the hub would print as a traceback each time.
        # Everything after the handshake is gunicorn's, which catches and logs its own errors.
        hub = gevent.get_hub()
        hub.NOT_ERROR = (*hub.NOT_ERROR, ssl.SSLError, OSError)

    def handle(self, listener, client, addr):
        # ggevent's handle() makes the socket blocking (no timeout at all); a socket timeout
        # is the idle timeout: it applies to every wait for one recv() or send().
        client.settimeout(self.idle_timeout)
        try:
            base_async.AsyncWorker.handle(self, listener, client, addr)
        finally:
            # Django keeps its database connections per thread, here per greenlet, i.e. per
            # client connection: they end with it. Left to the garbage collector, each SQLite
            # connection kept its page cache and its writer-lock descriptor (callfs_site.sqlite)
            # until a cyclic collection, and a busy worker ran out of descriptors.
            from django.db import connections

            connections.close_all()

    def _fair(self, listener_name, req, sock, addr):
        """gunicorn's handle_request, then a turn for the other connections: a keep-alive client
        whose next request is already here would otherwise be served again at once, and under
        load some connections waited many times longer than others. The yield costs a little
        throughput for that (measured: BENCHMARKS.md, "Where the small-request gap comes
        from")."""
        try:
            return super().handle_request(listener_name, req, sock, addr)
        finally:
            gevent.sleep(0)

    def timeout_ctx(self):
        # The wait for a request head: gunicorn's keep-alive time, and never past the idle
        # timeout (whose socket error would be logged as a failure; this ends quietly).
        return gevent.Timeout(min(self.cfg.keepalive, self.idle_timeout), False)

    def handle_request(self, listener_name, req, sock, addr):
        try:
            return self._fair(listener_name, req, sock, addr)
        except TimeoutError:  # a client that stopped reading (or sending) for idle_timeout
            IDLE_CLOSES.inc()
            self.log.info("closed %s:%s: idle for %s s", addr[0] if addr else "?",
                          addr[1] if addr else "?", self.idle_timeout)
            raise StopIteration from None


class DirectReadUnreader(SocketUnreader):
    """gunicorn's socket reader, except a large read (a piece of a request body) is received
    straight into buffers of its own and handed out whole. gunicorn's reads up to 1 MiB past
    what is asked into a BytesIO and slices, copying each upload several times over: a large
    body arrives much faster through this reader (measured: BENCHMARKS.md, "Measured along the
    way")."""

    def read(self, size=None, read_ahead=None):
        if size is None or size < DIRECT_READ_BYTES:
            return super().read(size, read_ahead)
        self.buf.seek(0, io.SEEK_END)
        if self.buf.tell() >= size:
            return super().read(size, read_ahead)
        pieces = [self.buf.getvalue()] if self.buf.tell() else []
        self.buf = io.BytesIO()
        missing = size - len(pieces[0]) if pieces else size
        while missing > 0:
            piece = self.sock.recv(missing)  # gevent's: waits cooperatively while none is there
            if not piece:
                break
            pieces.append(piece)
            missing -= len(piece)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)


class PackedResponse(wsgi.Response):
    """gunicorn's HTTP/1 response, sent with fewer syscalls and fuller TCP segments:

    - a small body that comes whole goes out in the same send() as the head: gunicorn sends
      the head, then the body, two segments on the wire and more CPU for every small GET
      (measured: BENCHMARKS.md);
    - a file goes out with os.sendfile() (zero-copy), corked: head and file leave in
      full-sized segments, the last one when the file is done (BENCHMARKS.md).
    """

    def sendfile(self, respiter):
        if self.cfg.is_ssl or not self.can_sendfile() or not util.has_fileno(respiter.filelike):
            return False
        corked = self.sock.family in (socket.AF_INET, socket.AF_INET6)
        if corked:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
        real_socket, self.sock = self.sock, _ZeroCopySocket(self.sock)
        try:
            # gunicorn's sendfile() sends the head, then calls sock.sendfile(): ours, below.
            return super().sendfile(respiter)
        finally:
            self.sock = real_socket
            if corked:  # uncorking sends what is left at once
                with contextlib.suppress(OSError):  # a client gone: its error, not ours
                    self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)

    def write(self, arg):
        if (self.headers_sent or type(arg) is not bytes or len(arg) > SINGLE_SEND_BYTES
                or len(arg) != self.response_length or self.chunked or self._omits_body):
            super().write(arg)
            return
        head = self.default_headers()  # as gunicorn's send_headers()
        head.extend(f"{name}: {value}\r\n" for name, value in self.headers)
        head.append("\r\n")
        self.headers_sent = True
        self.sent += len(arg)
        util.write(self.sock, "".join(head).encode("latin-1") + arg)


class _ZeroCopySocket:
    """The client socket as gunicorn's Response.sendfile() sees it: its sendfile() is
    os.sendfile() waiting cooperatively whenever the socket buffer is full, for at most the
    socket's timeout (the idle timeout)."""

    def __init__(self, sock):
        self._sock = sock

    def sendfile(self, file, offset: int = 0, count: int | None = None) -> int:
        out = self._sock.fileno()
        timeout = self._sock.gettimeout()
        sent = 0
        try:
            while count is None or sent < count:
                try:
                    done = os.sendfile(out, file.fileno(), offset + sent,
                                       (count - sent) if count is not None else 1 << 30)
                except BlockingIOError:
                    wait_write(out, timeout=timeout, timeout_exc=TimeoutError("timed out"))
                    continue
                if done == 0:  # the file ended early
                    break
                sent += done
        finally:
            file.seek(offset + sent)  # as socket.sendfile() leaves it
        return sent

    def __getattr__(self, name):
        return getattr(self._sock, name)


class _PackedResponseWsgi:
    """gunicorn.http.wsgi as base_async's handle_request sees it in this worker: responses are
    PackedResponse unless the caller brings its own (HTTP/2 does)."""

    def __getattr__(self, name):
        return getattr(wsgi, name)

    @staticmethod
    def create(req, sock, client, server, cfg, response_class=None, response_args=()):
        return wsgi.create(req, sock, client, server, cfg,
                           response_class=response_class or PackedResponse,
                           response_args=response_args)


def write_json_error(sock, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's `util.write_error` in the API's error shape, `{"code", "message"}`; a 500's
    text is the API's fixed one (it never shows internals)."""
    # Here, not at the top: callfs_site.errors imports Django (see the note on imports above).
    from callfs_site.errors import CallFSError, ErrorCode, render_error

    refusals = {  # the requests gunicorn refuses before the application sees them
        400: ErrorCode.INVALID_REQUEST, 403: ErrorCode.PERMISSION_DENIED,
        414: ErrorCode.URI_TOO_LONG, 417: ErrorCode.EXPECTATION_FAILED,
        431: ErrorCode.HEADERS_TOO_LARGE, 501: ErrorCode.NOT_IMPLEMENTED,
    }
    if status_int in refusals:
        body = render_error(refusals[status_int], mesg or reason)
    elif status_int < 500:
        body = render_error(ErrorCode.INVALID_REQUEST, mesg or reason)
    else:
        body = render_error(ErrorCode.INTERNAL_ERROR, CallFSError.default_detail)
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    util.write_nonblock(sock, head.encode("latin-1") + body)

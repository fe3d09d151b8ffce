"""gunicorn's gthread worker without its two hand-overs per request.

In gthread one thread owns the poller and a pool of threads serves: every keep-alive request
travels from the poller thread to a pool thread and back (a queue, a pipe write and read, two
epoll updates and two GIL hand-overs). On a small GET that machinery measured more CPU than
Django's own request handling.

Here every serving thread waits on one shared epoll set, in which a waiting connection is armed
once (EPOLLONESHOT): the kernel wakes a single thread for it, that thread serves the request
itself and re-arms the connection afterwards. A long request (a large transfer, an fsync) holds
one thread while the others keep serving, as in gthread. The main thread only beats the
heartbeat, closes idle and expired connections and runs the graceful stop.

A thread takes a plain-HTTP connection only once its whole request head has arrived: until then
the bytes are collected as they come and the connection waits in the poll set, so clients that
trickle their headers (slowloris) or send nothing hold no thread (in gthread, two of them froze
a two-thread worker). Bodies, TLS handshakes and slow readers of large downloads still hold the
thread that serves them. Parsing, TLS, HTTP/2, the WSGI call and the keep-alive rules are
gthread's own code.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import io
import select
import socket
import ssl
import threading
import time

from gunicorn import util
from gunicorn.http import wsgi
from gunicorn.http.message import DEFAULT_MAX_HEADERFIELD_SIZE, MAX_HEADERS, MAX_REQUEST_LINE
from gunicorn.http.unreader import SocketUnreader
from gunicorn.http2 import negotiation
from gunicorn.workers import base, gthread
from gunicorn.workers.gthread import (
    DEFAULT_WORKER_DATA_TIMEOUT,
    STOP_KEEPALIVE_LINGER,
    TConn,
    ThreadWorker,
)

from callfs_site.errors import CallFSError, InvalidRequest, PermissionDenied, render_error

ARMED = select.EPOLLIN | select.EPOLLONESHOT
DISARMED = 0
# How often the main thread beats the heartbeat and closes expired idle connections.
HOUSEKEEPING_SECONDS = 0.5
# A plain-HTTP request head is collected without a thread: bytes are read as they come (this
# many at a time), and the connection goes back to the poll set until the blank line that ends
# the head. A head has HEAD_SECONDS to arrive in full.
HEAD_READ_BYTES = 64 * 1024
HEAD_SECONDS = 30.0
# Reads of a request body this large are received straight into one buffer
# (DirectReadUnreader).
DIRECT_READ_BYTES = 64 * 1024
# Bodies up to this size, complete in one piece, are sent with the response head.
SINGLE_SEND_BYTES = 64 * 1024
# The API's error codes for the requests gunicorn refuses before the application sees them.
REFUSAL_CODES = {
    400: InvalidRequest.default_code, 403: PermissionDenied.default_code, 414: "URI_TOO_LONG",
    417: "EXPECTATION_FAILED", 431: "HEADERS_TOO_LARGE", 501: "NOT_IMPLEMENTED",
}


class PollingThreadWorker(ThreadWorker):
    """cfg.threads threads, each polling the shared set and serving what it is woken for."""

    head_seconds = HEAD_SECONDS

    def init_process(self):
        # gunicorn's handle_error, which maps its parser's exceptions to a status, sends the
        # answer through util.write_error and nothing else does: swapped here, every refusal
        # of a malformed or oversized request (400, 414, 431...) is in the API's JSON shape
        # instead of gunicorn's HTML page.
        util.write_error = write_json_error
        # Likewise gthread builds every HTTP/1 response with wsgi.create and no other hook.
        gthread.wsgi = _PackedResponseWsgi()
        self.epoll = select.epoll()
        self.conns: dict[int, TConn] = {}  # every open client connection, by descriptor
        # The connections armed in the set and owned by no thread (gthread's name: its
        # handle_request stops offering keep-alive once there are too many of them).
        self.keepalived_conns: dict[int, TConn] = {}
        self._lock = threading.Lock()
        self._listeners = {}
        self._accepting = False
        base.Worker.init_process(self)  # gthread's own would build its pool and poller

    def handle_exit(self, sig, frame):  # gthread's wakes its poller, which this worker lacks
        self.alive = False

    def handle_quit(self, sig, frame):  # likewise: no pool to shut down
        base.Worker.handle_quit(self, sig, frame)

    def run(self):
        self._listeners = {listener.fileno(): listener for listener in self.sockets}
        self._line_limit, self._head_limit = _head_limits(self.cfg)
        for fd, listener in self._listeners.items():
            listener.setblocking(False)
            self.epoll.register(fd, DISARMED)
        with self._lock:
            self._set_accepting(True)
        for number in range(self.cfg.threads):
            threading.Thread(target=self._serve_forever, name=f"callfs-serve-{number}",
                             daemon=True).start()

        while self.alive:
            self.notify()
            if not self.is_parent_alive():
                break
            self._close_expired()
            time.sleep(HOUSEKEEPING_SECONDS)

        # Graceful stop: no new connections; idle ones linger briefly, and a request arriving on
        # one is still answered (with "Connection: close", as handle_request sees alive False).
        with self._lock:
            self._set_accepting(False)
            linger = time.monotonic() + STOP_KEEPALIVE_LINGER
            for conn in self.keepalived_conns.values():
                conn.timeout = min(conn.timeout, linger)
        deadline = time.monotonic() + self.cfg.graceful_timeout
        while self.nr_conns > 0 and time.monotonic() < deadline:
            self.notify()
            self._close_expired()
            time.sleep(0.05)
        self._close_expired(force=True)
        for listener in self.sockets:
            listener.close()
        # Threads still inside a request past the graceful timeout end with the process.

    def _set_accepting(self, enabled: bool) -> None:
        """Arm or disarm the listening sockets (with the lock held)."""
        if enabled != self._accepting:
            for fd in self._listeners:
                self.epoll.modify(fd, ARMED if enabled else DISARMED)
            self._accepting = enabled

    def _serve_forever(self) -> None:
        while True:
            try:
                events = self.epoll.poll(1.0, 1)  # one event: the next ready one is another's
            except (OSError, ValueError):  # the set is gone: the process is ending
                return
            for fd, _ in events:
                listener = self._listeners.get(fd)
                try:
                    if listener is not None:
                        self._accept(listener)
                    else:
                        self._serve(fd)
                except (Exception, SystemExit):  # a bug must not cost the worker a thread
                    self.log.exception("Error in serving thread")

    def _accept(self, listener) -> None:
        sock = None
        try:
            sock, client = listener.accept()
        except OSError as exc:
            if self.alive and exc.errno not in (errno.EAGAIN, errno.ECONNABORTED,
                                                errno.EWOULDBLOCK):
                self.log.error("accept() failed: %s", exc)
                time.sleep(0.1)  # e.g. out of descriptors: not a busy loop of errors meanwhile
        with self._lock:
            try:
                if sock is not None:
                    conn = _Connection(self.cfg, sock, client, listener.getsockname())
                    conn.callfs_head = None  # a request head still arriving: a bytearray
                    conn.callfs_collects_heads = self._collects_heads(conn)
                    # gthread gives a silent new connection its data wait plus a keep-alive.
                    conn.timeout = (time.monotonic() + DEFAULT_WORKER_DATA_TIMEOUT
                                    + self.cfg.keepalive)
                    if not self.alive:  # accepted just as the stop began
                        conn.timeout = min(conn.timeout,
                                           time.monotonic() + STOP_KEEPALIVE_LINGER)
                    self.nr_conns += 1
                    self.conns[sock.fileno()] = conn
                    self.keepalived_conns[sock.fileno()] = conn
                    self.epoll.register(sock.fileno(), ARMED)
            finally:
                if self._accepting:  # else disarmed meanwhile (stopping, or at the cap)
                    if self.nr_conns < self.worker_connections and self.alive:
                        self.epoll.modify(listener.fileno(), ARMED)
                    else:
                        self._set_accepting(False)

    def _serve(self, fd: int) -> None:
        with self._lock:
            conn = self.keepalived_conns.pop(fd, None)
        if conn is None or not self._request_arrived(fd, conn):
            return
        conn.data_ready = True  # skips gthread's wait for a first request: it is here
        try:
            while (result := self.handle(conn)) is True:  # gthread's: True means keep-alive
                if not self._next_request_buffered(conn):
                    break
        except BaseException:  # never strand the socket, whatever escaped
            self._close(fd, conn, graceful=False)
            raise
        if result is not True:
            self._close(fd, conn, graceful=True)
            return
        if not conn.callfs_head:
            conn.set_timeout()  # else the head's own deadline stands
        self._rearm(fd, conn)

    def _collects_heads(self, conn: TConn) -> bool:
        """Plain HTTP/1 (decided once per connection): TLS records, a PROXY protocol header and
        an HTTP/2 preface are read by the connection's own set-up in gunicorn, which blocks."""
        return not (self.cfg.is_ssl or self.cfg.proxy_protocol != "off"
                    or negotiation.prior_knowledge_allowed(self.cfg, conn.client))

    def _request_arrived(self, fd: int, conn: TConn) -> bool:
        """Is a request there to serve? If not, the connection is back in the poll set (or
        closed, at the client's end of file) and holds no thread: a client sending its request
        head a byte at a time (slowloris) or a stale wake-up for a reused descriptor."""
        if not conn.callfs_collects_heads:
            if _readable(conn.sock):
                return True
            self._rearm(fd, conn)
            return False
        try:
            data = conn.sock.recv(HEAD_READ_BYTES, socket.MSG_DONTWAIT)
        except BlockingIOError:
            self._rearm(fd, conn)
            return False
        except OSError:  # reset by the client
            data = b""
        if not data:
            self._close(fd, conn, graceful=False)
            return False
        if self._head_complete(conn, data):
            return True
        self._rearm(fd, conn)
        return False

    def _next_request_buffered(self, conn: TConn) -> bool:
        """After a keep-alive response: is the next request already here, read ahead with the
        last one (pipelining, a body drain) or decrypted ahead by TLS? A plain-HTTP head that
        is only partly here waits in the poll set like any other."""
        if not conn.callfs_collects_heads:
            if conn.parser.unreader.buf.getvalue():
                return True
            pending = getattr(conn.sock, "pending", None)  # ssl.SSLSocket
            return bool(pending and pending())
        ahead = conn.parser.unreader.take_buffered()
        return bool(ahead) and self._head_complete(conn, ahead)

    def _head_complete(self, conn: TConn, data: bytes) -> bool:
        """Add bytes to the head being collected. Once it is whole, or past what gunicorn's
        parser accepts (which it then refuses at once, without waiting for more), it goes to
        the parser and True is returned; until then it stays with the connection."""
        head = conn.callfs_head
        if not head:
            conn.callfs_head = head = bytearray()
            conn.timeout = time.monotonic() + self.head_seconds
        seen = len(head)
        head += data
        if not self._head_ready(head, seen):
            return False
        conn.callfs_head = None
        conn.init()  # plain HTTP: makes the parser (once), which reads these bytes first
        unreader = conn.parser.unreader
        if not isinstance(unreader, CollectedHeadUnreader):
            unreader = conn.parser.unreader = CollectedHeadUnreader(conn.sock)
        unreader.add_collected(head)
        return True

    def _head_ready(self, head: bytearray, seen: int) -> bool:
        """Is the head whole (its blank line is in what arrived after the first `seen` bytes),
        or past the request line's limit or the whole head's?"""
        if (head.find(b"\r\n\r\n", max(seen - 3, 0)) >= 0
                or head.find(b"\n\n", max(seen - 1, 0)) >= 0
                or len(head) >= self._head_limit):
            return True
        # The request line may follow one empty line (RFC 9112 2.2): its end is sought after it.
        return len(head) > self._line_limit and head.find(b"\n", 2, self._line_limit) < 0

    def _rearm(self, fd: int, conn: TConn) -> None:
        """Back into the poll set, to wait for its next bytes until conn.timeout."""
        with self._lock:
            if not self.alive:
                conn.timeout = min(conn.timeout, time.monotonic() + STOP_KEEPALIVE_LINGER)
            self.keepalived_conns[fd] = conn
            self.epoll.modify(fd, ARMED)

    def _close(self, fd: int, conn: TConn, graceful: bool) -> None:
        with self._lock:
            self._forget(fd, conn)
        try:
            conn.close(graceful=graceful)
        except OSError:  # gthread closed it already (a TLS EOF, an error after the headers)
            pass

    def _forget(self, fd: int, conn: TConn) -> None:
        """Count a connection out and drop it from the set (with the lock held), before its
        descriptor is closed and can be reused. gthread closes some sockets itself before
        returning: their descriptor may already belong to a newer connection, left alone."""
        self.nr_conns -= 1
        if self.conns.get(fd) is conn:
            del self.conns[fd]
            if self.keepalived_conns.get(fd) is conn:
                del self.keepalived_conns[fd]
            try:
                self.epoll.unregister(fd)
            except (OSError, ValueError):  # closed already
                pass
        if not self._accepting and self.alive and self.nr_conns < self.worker_connections:
            self._set_accepting(True)

    def _close_expired(self, force: bool = False) -> None:
        now = time.monotonic()
        with self._lock:
            expired = [(fd, conn) for fd, conn in self.keepalived_conns.items()
                       if force or conn.timeout <= now]
            for fd, conn in expired:
                self._forget(fd, conn)
        for _, conn in expired:
            conn.close()


class DirectReadUnreader(SocketUnreader):
    """gunicorn's socket reader, except a large read, a piece of a request body, is received
    straight into one buffer of the size asked for. gunicorn's reads up to 1 MiB past what is
    asked into a BytesIO and slices: each 1 MiB piece of an upload passed through about five
    buffers, ~6 MiB at once (memray). Serving threads read with the socket blocking."""

    def _holds_bytes_elsewhere(self) -> bool:
        """Are bytes waiting outside `buf` that a read must give out first? (The head
        collector's.) Then gunicorn's own read takes them in order."""
        return False

    def read(self, size=None, read_ahead=None):
        if size is None or size < DIRECT_READ_BYTES or self._holds_bytes_elsewhere():
            return super().read(size, read_ahead)
        self.buf.seek(0, io.SEEK_END)
        if self.buf.tell() >= size:
            return super().read(size, read_ahead)
        pieces = [self.buf.getvalue()] if self.buf.tell() else []
        self.buf = io.BytesIO()
        missing = size - len(pieces[0]) if pieces else size
        # TLS gives at most a record per recv() and takes no flags; plain TCP fills the buffer
        # in one call (MSG_WAITALL), unless the body ends early or a signal cuts it short.
        flags = 0 if isinstance(self.sock, ssl.SSLSocket) else socket.MSG_WAITALL
        while missing > 0:
            piece = self.sock.recv(missing, flags)
            if not piece:
                break
            pieces.append(piece)
            missing -= len(piece)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)


class _Connection(TConn):
    """gthread's connection, its HTTP/1 parser reading through DirectReadUnreader (TLS too;
    plain-HTTP connections swap in CollectedHeadUnreader once their head is collected)."""

    def init(self):
        super().init()
        unreader = getattr(self.parser, "unreader", None)  # HTTP/2 has a parser of its own
        if type(unreader) is SocketUnreader:
            self.parser.unreader = DirectReadUnreader(self.sock)


class CollectedHeadUnreader(DirectReadUnreader):
    """gunicorn's socket reader, giving out a head collected in the poll set before reading the
    socket, in the pieces recv() would have returned. The parser measures a head only after each
    further read: an oversized head handed over in one piece would have it wait on the socket
    for bytes the client never sends, instead of refusing it."""

    def __init__(self, sock):
        super().__init__(sock)
        self._collected: collections.deque[bytes] = collections.deque()

    def add_collected(self, head: bytearray) -> None:
        if len(head) <= self.mxchunk:  # nearly every head
            self._collected.append(bytes(head))
            return
        view = memoryview(head)
        self._collected.extend(bytes(view[start:start + self.mxchunk])
                               for start in range(0, len(view), self.mxchunk))

    def chunk(self, size_hint=None):
        if self._collected:
            return self._collected.popleft()
        return super().chunk(size_hint)

    def take_buffered(self):
        ahead = super().take_buffered() + b"".join(self._collected)
        self._collected.clear()
        return ahead

    def _holds_bytes_elsewhere(self) -> bool:
        return bool(self._collected)


def _readable(sock) -> bool:
    poller = select.poll()  # not select(): descriptors past 1023 are common here
    try:
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):  # closed: let handle() find out and clean up
        return True


def _head_limits(cfg) -> tuple[int, int]:
    """Past these lengths gunicorn's parser refuses a request head under `cfg` as soon as it has
    read that much: a first line with no end yet (an empty line it skips before the request
    line, the request line, its CRLF), and a whole head (the same, then the header buffer)."""
    line = cfg.limit_request_line
    line = MAX_REQUEST_LINE if line < 0 or line >= MAX_REQUEST_LINE else line or 1024 * 1024
    fields = cfg.limit_request_fields
    fields = fields if 0 < fields <= MAX_HEADERS else MAX_HEADERS
    field_size = cfg.limit_request_field_size
    field_size = field_size if field_size > 0 else DEFAULT_MAX_HEADERFIELD_SIZE
    header_buffer = fields * (field_size + 2) + 4  # the parser's max_buffer_headers
    first_line = 2 + line + 2
    return first_line, first_line + header_buffer + 1


class PackedResponse(wsgi.Response):
    """gunicorn's HTTP/1 response in fewer, fuller TCP segments (BENCHMARKS.md):

    - a small body that comes whole goes out in the same send() as the head: gunicorn sends the
      head, then the body, two segments on the wire. On loopback the second cost 7% of a small
      GET's worker CPU;
    - a file sent with sendfile() goes out corked (TCP_CORK, nginx's `tcp_nopush`): the head and
      the file leave in full-sized segments, the last one when the file is done. A 1 GiB
      download on loopback went from ~2,100 to ~2,900 MB/s.
    """

    def sendfile(self, respiter):
        corked = self.sock.family in (socket.AF_INET, socket.AF_INET6) and not self.cfg.is_ssl
        if corked:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
        try:
            return super().sendfile(respiter)
        finally:
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


class _PackedResponseWsgi:
    """gunicorn.http.wsgi as gthread's handle_request sees it in these workers: responses are
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
    if status_int in REFUSAL_CODES:
        body = render_error(REFUSAL_CODES[status_int], mesg or reason)
    elif status_int < 500:
        body = render_error(InvalidRequest.default_code, mesg or reason)
    else:
        body = render_error(CallFSError.default_code, CallFSError.default_detail)
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    util.write_nonblock(sock, head.encode("latin-1") + body)

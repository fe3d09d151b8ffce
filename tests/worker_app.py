"""A bare WSGI app for tests/test_worker.py: the worker's behaviour without Django's cost.

GET /slow?seconds=S sleeps, /file?size=N answers a file of N bytes (file_bytes) through
wsgi.file_wrapper, /echo answers the request body's length and /digest its SHA-256
(read in pieces of ?piece=N bytes if given), /unreader the class of gunicorn's socket reader
behind the body and the body's length, /crash raises (with a secret in the error), anything
else "ok".
"""

import hashlib
import os
import tempfile
import time
from urllib.parse import parse_qs


def file_bytes(size: int) -> bytes:
    """The bytes of /file?size=N: a counter, so a misplaced piece shows."""
    count = -(-size // 4)
    return b"".join(n.to_bytes(4, "big") for n in range(count))[:size]


def _file(environ, start_response):
    size = int(parse_qs(environ["QUERY_STRING"])["size"][0])
    path = os.path.join(tempfile.gettempdir(), f"callfs-worker-app-{size}.bin")
    if not os.path.exists(path):
        with tempfile.NamedTemporaryFile(dir=tempfile.gettempdir(), delete=False) as out:
            out.write(file_bytes(size))
        os.replace(out.name, path)
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(size))])
    return environ["wsgi.file_wrapper"](open(path, "rb"))  # noqa: SIM115 - the server closes it


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/file":
        return _file(environ, start_response)
    if path == "/slow":
        time.sleep(float(parse_qs(environ["QUERY_STRING"]).get("seconds", ["1"])[0]))
    if path == "/crash":
        raise RuntimeError("secret-internal-detail")
    if path == "/echo":
        body = str(len(environ["wsgi.input"].read())).encode()
    elif path == "/digest":
        piece = int(parse_qs(environ["QUERY_STRING"]).get("piece", ["-1"])[0])
        digest = hashlib.sha256()
        while data := environ["wsgi.input"].read(piece):
            digest.update(data)
        body = digest.hexdigest().encode()
    elif path == "/unreader":
        stream = environ["wsgi.input"]
        length = len(stream.read())
        body = f"{type(stream.reader.unreader).__name__} {length}".encode()
    else:
        body = f"ok {path} {os.getpid()}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]

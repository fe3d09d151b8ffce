"""A bare WSGI app for tests/test_worker.py: the worker's behaviour without Django's cost.

GET /slow?seconds=S sleeps, /echo answers the request body's length and /digest its SHA-256
(read in pieces of ?piece=N bytes if given), /unreader the class of gunicorn's socket reader
behind the body and the body's length, /crash raises (with a secret in the error), anything
else "ok".
"""

import hashlib
import os
import time
from urllib.parse import parse_qs


def app(environ, start_response):
    path = environ["PATH_INFO"]
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

"""A bare WSGI app for tests/test_worker.py: the worker's behaviour without Django's cost.

GET /slow?seconds=S sleeps, GET /echo answers the request's body length, anything else "ok".
"""

import os
import time
from urllib.parse import parse_qs


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/slow":
        time.sleep(float(parse_qs(environ["QUERY_STRING"]).get("seconds", ["1"])[0]))
    if path == "/echo":
        body = str(len(environ["wsgi.input"].read())).encode()
    else:
        body = f"ok {path} {os.getpid()}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]

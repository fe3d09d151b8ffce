"""Small helpers for API tests."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path


def assert_error(response, status: int, code: str | None = None) -> dict:
    """The response is an error of the given status (and code) in the JSON error shape."""
    assert response.status_code == status, (response.status_code, response.content[:300])
    assert response["Content-Type"].startswith("application/json")
    body = json.loads(response.content)
    assert set(body) >= {"code", "message"}
    assert isinstance(body["message"], str) and body["message"]
    if code is not None:
        assert body["code"] == code, body
    return body


def through_application(path: str, key: str, method: str = "GET",
                        keep: Callable | None = None) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) from the WSGI application itself, as gunicorn calls it; `keep`
    is given the response object. Django's connection cleanup at the request's ends is held
    off, as its test client does, so the test's transaction stays."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections
    from django.test import RequestFactory

    from callfs_site.wsgi import application

    environ = RequestFactory().generic(method, path, HTTP_AUTHORIZATION=f"Bearer {key}").environ
    started = []
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        body = application(environ, lambda status, headers, exc_info=None:
                           started.append((status, headers)))
        if keep is not None:
            keep(body)
        content = b"".join(body)
        body.close()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
    status, headers = started[0]
    return int(status.split()[0]), dict(headers), content


def body_of(response) -> bytes:
    """The full body of a normal or streaming response."""
    if getattr(response, "streaming", False):
        return b"".join(response.streaming_content)
    return response.content


def upload(client, path: str, data: bytes = b"", method: str = "post", **extra):
    """Send raw bytes to /v1/files/<path>."""
    send = getattr(client, method)
    return send(f"/v1/files/{path.lstrip('/')}", data=data,
                content_type="application/octet-stream", **extra)


def stored_blobs(data_dir: Path) -> set[str]:
    """The keys of the blobs holding bytes under a data directory. Empty files are left out:
    each process keeps empty upload slots ready (filesystem/storage/local.py)."""
    blobs = data_dir / "blobs"
    if not blobs.exists():
        return set()
    return {p.name for p in blobs.rglob("*") if p.is_file() and p.stat().st_size}


def run_in_threads(*jobs: Callable[[], object], timeout: float | None = None) -> None:
    """Start every job in a thread of its own at once, then wait for all of them."""
    threads = [threading.Thread(target=job) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)

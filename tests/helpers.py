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

"""Small helpers for API tests."""

from __future__ import annotations

import json


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

"""Request bodies as chunk iterators: uploads of any size in constant memory.

Never `request.data`, `.body` or `FILES` for uploads. With `Content-Length` the body is read up to
that length (a short body is an error, so a client that disconnects mid-upload stores nothing).
A chunked body (`curl -T -`) has no `Content-Length`: Django's own reader sees nothing, so it is
read from `wsgi.input` until EOF, which gunicorn de-chunks and terminates.

Reads start at 64 KiB and double, up to 1 MiB, while each one completes at once: a fast client
gets large chunks (fewer hand-overs to the hashing and writing threads), while a slow one, which
would take seconds to fill 1 MiB, never has more than a small piece waiting in memory: hundreds
of slow uploads at once stay cheap.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.http import HttpRequest

from callfs_site.db import LONG_TRANSFER_BYTES, release_connections
from callfs_site.metrics import UPLOADS_TIMED_OUT
from filesystem.exceptions import BadRequest, InvalidRequest, LengthRequired, PayloadTooLarge

CHUNK_SIZE = 1024 * 1024  # the largest read
FIRST_READ_SIZE = 64 * 1024
FAST_READ_SECONDS = 0.01  # a read done this soon doubles the next one's size
# The other direction: every streamed download (FileResponse.block_size) reads its file this
# much at a time.
DOWNLOAD_BLOCK_SIZE = 256 * 1024


class IncompleteBody(InvalidRequest):
    default_detail = "the request body ended before Content-Length bytes arrived"


def _django_request(request) -> HttpRequest:
    return getattr(request, "_request", request)


def _cut_off(exc: OSError, default: str) -> IncompleteBody:
    """The error for a body read that failed: reset by the client, or idle too long (counted:
    the worker's idle timeout, callfs_site.workers). Django's request.read() wraps the socket's
    error in UnreadablePostError, so the cause is looked at too."""
    if isinstance(exc, TimeoutError) or isinstance(exc.__cause__, TimeoutError):
        UPLOADS_TIMED_OUT.inc()
        return IncompleteBody(f"no byte of the request body arrived for "
                              f"{settings.CALLFS.idle_timeout:g} s")
    return IncompleteBody(default)


class _Reads:
    """Read sizes that follow the client's speed (see the module docstring)."""

    def __init__(self):
        self.size = FIRST_READ_SIZE

    def read(self, stream, limit: int) -> bytes:
        started = time.monotonic()
        chunk = stream.read(min(self.size, limit))
        if self.size < CHUNK_SIZE and time.monotonic() - started < FAST_READ_SECONDS:
            self.size *= 2
        return chunk


def _read_exact(stream, length: int) -> Iterator[bytes]:
    release_connections(long_transfer=length >= LONG_TRANSFER_BYTES)  # callfs_site.db
    reads = _Reads()
    remaining = length
    while remaining > 0:
        try:
            chunk = reads.read(stream, remaining)
        except OSError as exc:  # connection reset or idle past the timeout mid-body
            raise _cut_off(exc, IncompleteBody.default_detail) from None
        if not chunk:
            raise IncompleteBody()
        remaining -= len(chunk)
        yield chunk


def _read_to_eof(stream, cap: int) -> Iterator[bytes]:
    release_connections(long_transfer=True)  # no length: it may be long (callfs_site.db)
    reads = _Reads()
    received = 0
    while True:
        try:
            chunk = reads.read(stream, CHUNK_SIZE)
        except OSError as exc:
            raise _cut_off(exc, "the chunked request body was cut off") from None
        if not chunk:
            return
        received += len(chunk)
        if received > cap:
            raise PayloadTooLarge()
        yield chunk


def iter_body(request, cap: int | None = None) -> Iterator[bytes]:
    """The request body as chunks. Size problems known from the headers are raised now, before
    any byte is read; a chunked body over the cap fails while streaming (nothing is stored)."""
    limit = settings.CALLFS.max_upload_bytes if cap is None else cap
    django_request = _django_request(request)
    meta = django_request.META
    length = announced_length(request)
    if length is not None:
        if length > limit:
            raise PayloadTooLarge(f"request body is larger than the {limit}-byte upload limit")
        return _read_exact(django_request, length)
    if "chunked" in meta.get("HTTP_TRANSFER_ENCODING", "").lower():
        if not meta.get("wsgi.input_terminated"):
            raise LengthRequired()
        return _read_to_eof(meta["wsgi.input"], limit)
    return iter(())


def announced_length(request) -> int | None:
    """The body's Content-Length (None: not given, e.g. a chunked body); 400 if not a size."""
    raw_length = _django_request(request).META.get("CONTENT_LENGTH") or ""
    if not raw_length.strip():
        return None
    try:
        length = int(raw_length)
    except ValueError:
        raise InvalidRequest("Content-Length is not a number") from None
    if length < 0:
        raise InvalidRequest("Content-Length is negative")
    return length


def has_body(request) -> bool:
    """True if the request announces a non-empty body."""
    meta = _django_request(request).META
    return (meta.get("CONTENT_LENGTH") or "0").strip() not in ("", "0") or \
        "chunked" in meta.get("HTTP_TRANSFER_ENCODING", "").lower()


def read_json(request, limit: int, error: type[InvalidRequest] = BadRequest) -> Any:
    """A small JSON body (PATCH, link requests): too large or not JSON is `error`."""
    try:
        data = b"".join(iter_body(request, cap=limit))
    except PayloadTooLarge:
        raise error(f"request body is larger than {limit} bytes") from None
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        # RecursionError: a small body can nest deeper than the parser's stack ("[[[[...").
        raise error("invalid JSON body") from None

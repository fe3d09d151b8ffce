"""HTTP validators and ranges (API.md §16.3): ETag = the file's sha256, Last-Modified = mtime.

Read-side checks decide 304/206/416 before a byte is sent; write-side checks become a
`Precondition` that the services run twice: before the upload and again under the path lock,
so a stale `If-Match` can never change anything.

A file's ETag is its content digest, so it exists only for callers who may read the file
(`access.may_see_digest`, §16.5): `etag()` gives others none, and an If-Match / If-None-Match
tag list from them answers 403 before anything is compared, on every method - else 412/304
versus 403/200 would tell a right guess from a wrong one. `*` only asks whether the file
exists, and dates (Last-Modified, If-*-Since) are metadata: both stay open to anyone who may
stat the file. GET checks `r` before any of this, so Range and If-Range only serve readers.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import datetime

from django.utils.http import http_date, parse_http_date_safe

from filesystem import access
from filesystem.access import User
from filesystem.exceptions import PermissionDenied, PreconditionFailed, RangeNotSatisfiable
from filesystem.models import Inode
from filesystem.services import Precondition

# The headers read here, by their WSGI names.
_CONSULTED = ("HTTP_RANGE", "HTTP_IF_NONE_MATCH", "HTTP_IF_MATCH", "HTTP_IF_MODIFIED_SINCE",
              "HTTP_IF_UNMODIFIED_SINCE", "HTTP_IF_RANGE")


def validators(request) -> Mapping[str, str]:
    """What the functions below read: the request's headers when it carries a validator or a
    Range, else nothing. Most requests carry neither, and building `request.headers` (every
    header of the request parsed) is a noticeable part of a small download (measured:
    BENCHMARKS.md)."""
    meta = request.META
    return request.headers if any(name in meta for name in _CONSULTED) else {}


def etag(inode: Inode, user: User) -> str | None:
    """The strong entity tag of a file as `user` may see it: none for directories, for files
    without a digest, and for callers who may not read the file."""
    if inode.is_dir or not inode.sha256 or not access.may_see_digest(user, inode):
        return None
    return f'"{inode.sha256}"'


def last_modified(inode: Inode) -> str:
    return _http_date(inode.mtime)


@functools.lru_cache(maxsize=4096)  # every download formats its file's mtime: hot files repeat
def _http_date(moment: datetime) -> str:
    return http_date(moment.timestamp())


def _tags(header: str) -> list[str]:
    return [tag.strip() for tag in header.split(",") if tag.strip()]


def _require_comparable(user: User, inode: Inode) -> None:
    """Whether a tag matches a file's ETag is knowledge of its content: readers only."""
    if not inode.is_dir and not access.may_see_digest(user, inode):
        raise PermissionDenied("permission denied: comparing entity tags needs read "
                               "permission on the file")


def _matches(header: str, inode: Inode | None, user: User, *, weak: bool) -> bool:
    """Does an If-Match / If-None-Match list match the inode's current tag? `*` matches any
    existing entry; a list of tags may be compared only by a reader (else 403)."""
    if inode is None:
        return False
    tags = _tags(header)
    if "*" in tags:
        return True
    _require_comparable(user, inode)
    current = etag(inode, user)
    if current is None:
        return False
    if weak:
        tags = [t[2:] if t.startswith("W/") else t for t in tags]
    return current in tags


def _not_modified_since(header: str, inode: Inode) -> bool:
    since = parse_http_date_safe(header)
    return since is not None and int(inode.mtime.timestamp()) <= since


def read_status(headers, inode: Inode, user: User) -> int | None:
    """412 or 304 for a GET/HEAD whose preconditions say so (RFC 9110 §13.2.2), else None;
    403 for a tag comparison by a caller who may not read the file."""
    if_match = headers.get("If-Match")
    if if_match is not None and not _matches(if_match, inode, user, weak=False):
        return 412
    if_unmodified = headers.get("If-Unmodified-Since")
    if if_match is None and if_unmodified and not _not_modified_since(if_unmodified, inode):
        return 412
    if_none_match = headers.get("If-None-Match")
    if if_none_match is not None:
        return 304 if _matches(if_none_match, inode, user, weak=True) else None
    if_modified = headers.get("If-Modified-Since")
    if if_modified and _not_modified_since(if_modified, inode):
        return 304
    return None


def write_precondition(headers, user: User) -> Precondition | None:
    """The If-Match / If-None-Match / If-Unmodified-Since checks of a PUT, DELETE or PATCH. A tag
    comparison needs read permission even where the method itself does not (a writer, a
    renamer): a 412 for a wrong guess and a success for the right one would reveal the content,
    and the services run preconditions before their own permission checks."""
    if_match = headers.get("If-Match")
    if_none_match = headers.get("If-None-Match")
    if_unmodified = headers.get("If-Unmodified-Since")
    if if_match is None and if_none_match is None and not if_unmodified:
        return None

    def check(current: Inode | None) -> None:
        if if_match is not None and not _matches(if_match, current, user, weak=False):
            raise PreconditionFailed("If-Match does not match the current file")
        if if_none_match is not None and _matches(if_none_match, current, user, weak=True):
            raise PreconditionFailed("If-None-Match: the file exists or matches")
        if if_unmodified and current is not None and if_match is None \
                and not _not_modified_since(if_unmodified, current):
            raise PreconditionFailed("the file was modified since If-Unmodified-Since")

    return check


def byte_range(headers, inode: Inode, user: User) -> tuple[int, int] | None:
    """(start, length) of a satisfiable single `Range: bytes=` request, None for the whole file;
    416 when the range lies outside the file. Multi-range requests get the whole file. Only
    for a caller who may read the file (GET checks that first)."""
    header = headers.get("Range")
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    if_range = headers.get("If-Range")
    if if_range is not None:
        if if_range.startswith('"') or if_range.startswith("W/"):
            if if_range != etag(inode, user):
                return None
        elif not _not_modified_since(if_range, inode):
            return None
    first, sep, last = header[6:].strip().partition("-")
    if not sep:
        return None
    size = inode.size
    try:
        if first == "":
            suffix = int(last)
            if suffix <= 0:
                raise RangeNotSatisfiable(headers={"Content-Range": f"bytes */{size}"})
            start = max(size - suffix, 0)
            end = size - 1
        else:
            start = int(first)
            end = int(last) if last else size - 1
    except ValueError:
        return None  # a malformed Range header is ignored (RFC 9110 §14.2)
    if start < 0:
        return None
    if start >= size:
        raise RangeNotSatisfiable(headers={"Content-Range": f"bytes */{size}"})
    if end < start:
        return None
    end = min(end, size - 1)
    return start, end - start + 1

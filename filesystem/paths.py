"""The one path canonicaliser (API.md §4.3, §15, §16.1): URL paths and body paths go through here.

Pure functions, no I/O. A path that escapes the root or holds forbidden characters is rejected,
never clamped, so a request can never be re-aimed at `/` or at another user's file.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from filesystem.exceptions import InvalidPath

ROOT = "/"
MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 4096

# NUL and C0 controls except TAB, the backslash, and the Unicode bidi overrides (§4.3 steps 4-5).
_FORBIDDEN = re.compile("[\x00-\x08\x0a-\x1f\\\\\u202a-\u202e\u2066-\u2069]")


@dataclass(frozen=True)
class ParsedPath:
    """A canonical engine path plus whether the request named it with a trailing slash."""

    path: str
    trailing_slash: bool

    @property
    def is_root(self) -> bool:
        return self.path == ROOT


def parse(raw: str) -> ParsedPath:
    """Canonicalise a request path (§4.3); raise InvalidPath for anything unsafe or too long."""
    text = raw[1:] if raw.startswith("/") else raw
    trailing = text.endswith("/")
    if trailing:
        text = text[:-1]
    if text in ("", "."):
        return ParsedPath(ROOT, True)
    if _FORBIDDEN.search(text):
        raise InvalidPath("path contains a forbidden character")
    parts: list[str] = []
    for segment in text.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if not parts:
                raise InvalidPath("path escapes the root directory")
            parts.pop()
            continue
        if len(segment.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
            raise InvalidPath(f"a path segment is longer than {MAX_NAME_BYTES} bytes")
        parts.append(segment)
    if not parts:
        return ParsedPath(ROOT, True)
    path = "/" + "/".join(parts)
    if len(path.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise InvalidPath(f"path is longer than {MAX_PATH_BYTES} bytes")
    return ParsedPath(path, trailing)


def canonical(raw: str) -> str:
    """The canonical engine path of `raw` (no trailing-slash information)."""
    return parse(raw).path


def is_valid_name(name: str) -> bool:
    """True if `name` can be one path segment (§7.7 rows 4-5)."""
    return (
        name not in ("", ".", "..")
        and "/" not in name
        and not _FORBIDDEN.search(name)
        and len(name.encode("utf-8", "surrogatepass")) <= MAX_NAME_BYTES
    )


def parent_of(path: str) -> str:
    """The parent directory of a canonical path; the root is its own parent."""
    if path == ROOT:
        return ROOT
    head = path.rsplit("/", 1)[0]
    return head or ROOT


def name_of(path: str) -> str:
    """The last segment of a canonical path ('' for the root)."""
    return path.rsplit("/", 1)[1] if path != ROOT else ""


def join(parent: str, name: str) -> str:
    """The canonical path of `name` inside the directory `parent`."""
    return f"/{name}" if parent == ROOT else f"{parent}/{name}"


def ancestors(path: str) -> list[str]:
    """Every proper ancestor of `path`, root first: '/a/b/c' -> ['/', '/a', '/a/b']."""
    if path == ROOT:
        return []
    parts = path.split("/")[1:-1]
    return [ROOT] + ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]


def is_within(path: str, directory: str) -> bool:
    """True if `path` is `directory` itself or lies below it."""
    return directory == ROOT or path == directory or path.startswith(directory + "/")


def path_key(path: str) -> str:
    """The fixed-size unique key a path is indexed by (a hash, so long paths index everywhere)."""
    return hashlib.sha256(path.encode("utf-8", "surrogatepass")).hexdigest()

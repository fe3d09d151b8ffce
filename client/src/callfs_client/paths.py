"""Remote paths: `callfs:///a/b` or `/a/b` in, the canonical `/a/b` out, as the server's own
canonicaliser (API.md §4.3) would make it. Canonicalising here, before the URL is built, keeps
HTTP libraries from resolving `..` on their own and turns an escape above the root into an error
instead of a request for something else."""

from __future__ import annotations

from urllib.parse import quote

from callfs_client.errors import InvalidRequest

SCHEME = "callfs://"


class InvalidPath(InvalidRequest):
    """A remote path that escapes the root or holds a character the server refuses."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__("INVALID_PATH", message, None, path)

    def __reduce__(self):
        return type(self), (self.path, self.message)


def is_remote(text: str) -> bool:
    """Whether a command-line argument names a remote path (`callfs://...`)."""
    return text.startswith(SCHEME)


def strip_scheme(text: str) -> str:
    """`callfs:///a/b` (or `callfs://a/b`, `callfs::/a/b`) -> `/a/b`; other text unchanged."""
    if text.startswith(SCHEME):
        return text[len(SCHEME):]
    if text.startswith("callfs::"):
        return text[len("callfs::"):]
    return text


def normalize(path: str) -> str:
    """The canonical absolute form of a remote path: leading `/`, no trailing `/`, no empty, `.`
    or `..` segments. `..` above the root raises InvalidPath, as the server answers 400."""
    text = strip_scheme(str(path))
    if "\\" in text or "\x00" in text:
        raise InvalidPath(text, "backslashes and NUL are not allowed in remote paths")
    parts: list[str] = []
    for segment in text.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if not parts:
                raise InvalidPath(text, "the path escapes the root directory")
            parts.pop()
        else:
            parts.append(segment)
    return "/" + "/".join(parts)


def has_trailing_slash(text: str) -> bool:
    """Whether a path names a directory explicitly (`callfs:///dir/`)."""
    return strip_scheme(str(text)).endswith("/")


def join(base: str, *names: str) -> str:
    """`base` with `names` appended, canonical."""
    return normalize("/".join([base, *names]))


def parent(path: str) -> str:
    path = normalize(path)
    return path.rsplit("/", 1)[0] or "/"


def basename(path: str) -> str:
    return normalize(path).rsplit("/", 1)[-1]


def relative_to(path: str, base: str) -> str:
    """`path` below `base` as a relative path (`/a/b/c` under `/a` -> `b/c`)."""
    path, base = normalize(path), normalize(base)
    if base == "/":
        return path[1:]
    if not path.startswith(base + "/"):
        raise ValueError(f"{path} is not below {base}")
    return path[len(base) + 1:]


def is_within(path: str, base: str) -> bool:
    """Whether `path` is `base` or lies below it."""
    path, base = normalize(path), normalize(base)
    return base == "/" or path == base or path.startswith(base + "/")


def quote_path(path: str) -> str:
    """The URL form of a canonical path, without its leading slash: every segment
    percent-encoded (the server decodes exactly once, §16.1)."""
    return quote(normalize(path).lstrip("/"), safe="/")

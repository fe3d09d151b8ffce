"""What the client returns: entries (from a listing or a HEAD), links and transfer results."""

from __future__ import annotations

import re
import stat
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

FILE = "file"
DIRECTORY = "directory"


def parse_time(value: str | None) -> datetime | None:
    """An RFC 3339 time of the API (`2026-07-31T12:00:05Z`), None when absent or unreadable."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def format_time(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.isoformat().replace("+00:00", "Z")


def mode_string(kind: str, mode: int | None) -> str:
    """`ls -l`'s mode column: `drwxr-xr-x`, with s/S and t/T for setgid and sticky."""
    if mode is None:
        return ("d" if kind == DIRECTORY else "-") + "?" * 9
    type_bits = stat.S_IFDIR if kind == DIRECTORY else stat.S_IFREG
    return stat.filemode(type_bits | mode)


_SYMBOLIC = re.compile(r"([ugoa]*)([-+=])([rwxXst]*)")


def parse_mode(text: str, current: FileInfo | None) -> int:
    """An octal mode (`640`, `0640`) or chmod(1)'s symbolic one (`u+x,g-w,o=`), the latter
    applied to `current`."""
    if re.fullmatch(r"[0-7]{1,4}", text):
        return int(text, 8)
    if current is None or current.mode is None:
        raise ValueError(f"{text!r}: invalid mode")
    mode = current.mode
    for clause in text.split(","):
        found = _SYMBOLIC.fullmatch(clause)
        if not found:
            raise ValueError(f"{text!r}: invalid mode")
        who, op, perms = found.groups()
        who = who.replace("a", "ugo") or "ugo"
        bits = 0
        for person in set(who):
            shift = {"u": 6, "g": 3, "o": 0}[person]
            for perm in perms:
                if perm == "X" and not (current.is_dir or mode & 0o111):
                    continue
                bits |= {"r": 4, "w": 2, "x": 1, "X": 1}.get(perm, 0) << shift
                if perm == "s":
                    bits |= {"u": 0o4000, "g": 0o2000}.get(person, 0)
                if perm == "t" and person == "o":
                    bits |= 0o1000
        if op == "+":
            mode |= bits
        elif op == "-":
            mode &= ~bits
        else:
            mask = sum({"u": 0o4700, "g": 0o2070, "o": 0o1007}[p] for p in set(who))
            mode = (mode & ~mask) | bits
    return mode


@dataclass(frozen=True)
class FileInfo:
    """A file or directory. In a directory the caller may read but not traverse, listings give
    only `name`, `path` and `type`: the other fields are None there (as `ls -l` shows `?`).
    `sha256`, `etag` and `node` come only from `Client.stat` (a HEAD), and the digests only
    to callers who may read the file."""

    path: str
    name: str
    type: str
    size: int | None = None
    mode: int | None = None
    owner: str | None = None
    group: str | None = None
    mtime: datetime | None = None
    sha256: str | None = None
    etag: str | None = None
    node: str | None = None

    @property
    def is_dir(self) -> bool:
        return self.type == DIRECTORY

    @property
    def is_file(self) -> bool:
        return self.type == FILE

    @property
    def mode_string(self) -> str:
        return mode_string(self.type, self.mode)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: mode as the API's octal string, times in RFC 3339."""
        data = asdict(self)
        data["mode"] = None if self.mode is None else f"{self.mode:04o}"
        data["mtime"] = format_time(self.mtime)
        return data

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any]) -> FileInfo:
        """From a listing entry (API.md §5.2)."""
        mode = entry.get("mode")
        return cls(path=entry["path"], name=entry.get("name") or entry["path"].rsplit("/", 1)[-1]
                   or "/", type=entry["type"], size=entry.get("size"),
                   mode=int(mode, 8) if mode else None, owner=entry.get("owner"),
                   group=entry.get("group"), mtime=parse_time(entry.get("mtime")))

    @classmethod
    def from_headers(cls, path: str, headers: Mapping[str, str]) -> FileInfo:
        """From the X-CallFS-* headers of a HEAD or GET (API.md §5.1)."""
        size = headers.get("X-CallFS-Size")
        mode = headers.get("X-CallFS-Mode")
        return cls(path=path, name=path.rsplit("/", 1)[-1] or "/",
                   type=headers.get("X-CallFS-Type", FILE),
                   size=int(size) if size and size.isdigit() else None,
                   mode=int(mode, 8) if mode else None, owner=headers.get("X-CallFS-Owner"),
                   group=headers.get("X-CallFS-Group"),
                   mtime=parse_time(headers.get("X-CallFS-MTime")),
                   sha256=headers.get("X-CallFS-SHA256"), etag=headers.get("ETag"),
                   node=headers.get("X-CallFS-Instance-ID"))


@dataclass(frozen=True)
class Link:
    """A download link record (API.md §16.4); the token itself is never shown again."""

    id: str
    path: str
    state: str
    created_by: str | None = None
    created_at: datetime | None = None
    expires_at: datetime | None = None
    used_at: datetime | None = None
    revoked_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("created_at", "expires_at", "used_at", "revoked_at"):
            data[key] = format_time(data[key])
        return data

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Link:
        return cls(id=record["id"], path=record["path"], state=record.get("state", ""),
                   created_by=record.get("created_by"),
                   created_at=parse_time(record.get("created_at")),
                   expires_at=parse_time(record.get("expires_at")),
                   used_at=parse_time(record.get("used_at")),
                   revoked_at=parse_time(record.get("revoked_at")))


@dataclass(frozen=True)
class CreatedLink:
    """A new single-use link: `url` works once, without a key, until `expires_at`."""

    url: str
    token: str
    path: str
    expires_at: datetime | None

    @property
    def id(self) -> str:
        """The link record's id: the token's part before the dot."""
        return self.token.split(".", 1)[0]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "url": self.url, "token": self.token, "path": self.path,
                "expires_at": format_time(self.expires_at)}


@dataclass(frozen=True)
class Transfer:
    """What an upload or download moved: the remote path, bytes, their sha256 (None when it
    was not computed), and for uploads whether the file was created (else overwritten)."""

    path: str
    size: int
    sha256: str | None
    created: bool | None = None

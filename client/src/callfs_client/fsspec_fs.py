"""`callfs://` for fsspec, and through it pandas, Dask, DuckDB and pyarrow:

    fsspec.open("callfs:///data/x.csv", "rb", url="http://127.0.0.1:8000", key="...")
    pandas.read_csv("callfs:///data/x.csv")      # url and key from CALLFS_URL / CALLFS_KEY

Reads fetch blocks with Range requests (fsspec's read-ahead cache), each pinned with If-Match to
the version opened, so a file replaced mid-read fails instead of mixing two versions. A write is
ONE streamed upload: a small file (under one block) goes as a single PUT with its sha256; a
larger one starts a PUT whose chunked body a background thread feeds from a bounded queue, so
memory holds a few blocks whatever the size. The server keeps the old content until the last
byte is in, and a `with` block left by an exception aborts the upload rather than store a
truncated file. `ls`, `info`, `find`, `rm`, `mv`, `mkdir`, `cp_file` and `sign` map to single
API calls (a recursive listing, a recursive DELETE, a server-side move or copy, a link).
"""

from __future__ import annotations

import os
import secrets
from datetime import datetime
from typing import Any

from fsspec.callbacks import DEFAULT_CALLBACK
from fsspec.spec import AbstractBufferedFile, AbstractFileSystem

from callfs_client import paths
from callfs_client.bodies import StreamedUpload
from callfs_client.client import MAX_DEPTH, Client
from callfs_client.config import resolve
from callfs_client.errors import (
    AlreadyExists,
    IsADirectory,
    NotADirectory,
    NotFound,
    PreconditionFailed,
)
from callfs_client.models import FileInfo


class _Configured(type(AbstractFileSystem)):
    """Fills `url`/`key` from CALLFS_URL / CALLFS_KEY or a profile *before* fsspec caches the
    instance by its arguments, so filesystems for different servers never share a cache slot,
    and a pickled filesystem (Dask) carries what it connects with."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        for name, value in zip(("url", "key"), args, strict=False):
            kwargs.setdefault(name, value)
        args = args[2:]
        if "client" not in kwargs and not (kwargs.get("url") and kwargs.get("key")):
            settings = resolve(kwargs.pop("profile", None), url=kwargs.get("url"),
                               key=kwargs.get("key"), retries=kwargs.get("retries"))
            kwargs.update(url=settings.url, key=settings.key)
            for name, value in settings.client_options().items():  # retries, timeout, verify
                kwargs.setdefault(name, value)
        kwargs.pop("profile", None)
        return super().__call__(*args, **kwargs)


def _info(entry: FileInfo) -> dict[str, Any]:
    """fsspec's info dict: name, size, type, plus the API's fields."""
    return {"name": entry.path, "size": entry.size, "type": entry.type, "mode": entry.mode,
            "owner": entry.owner, "group": entry.group,
            "mtime": entry.mtime.timestamp() if entry.mtime else None,
            "sha256": entry.sha256, "etag": entry.etag, "node": entry.node}


class CallFSFileSystem(AbstractFileSystem, metaclass=_Configured):
    """A CallFS server as an fsspec filesystem. Options: `url`, `key` (default CALLFS_URL,
    CALLFS_KEY), `profile` (a profile of ~/.config/callfs/config.toml), `retries`, `timeout`,
    `verify`, or a ready `client`."""

    protocol = "callfs"
    root_marker = "/"
    blocksize = 5 * 2**20

    def __init__(self, url: str | None = None, key: str | None = None, *,
                 retries: int = 3, timeout: float | tuple[float, float] | None = None,
                 verify: bool | str = True, client: Client | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if client is None:
            options: dict[str, Any] = {"retries": retries, "verify": verify}
            if timeout is not None:
                options["timeout"] = timeout
            client = Client(url or "", key or "", **options)
        self.client = client

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        return paths.normalize(str(path))

    @staticmethod
    def _get_kwargs_from_urls(path: str) -> dict[str, Any]:
        return {}

    def unstrip_protocol(self, name: str) -> str:
        return name if name.startswith("callfs://") else "callfs://" + paths.normalize(name)

    # -- metadata ---------------------------------------------------------------------------

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        path = self._strip_protocol(path)
        try:
            entries = [_info(e) for e in self.client.iter_list(path)]
        except NotADirectory:
            entries = [self.info(path)]
        return entries if detail else [e["name"] for e in entries]

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        return _info(self.client.stat(self._strip_protocol(path)))

    def find(self, path: str, maxdepth: int | None = None, withdirs: bool = False,
             detail: bool = False, **kwargs: Any) -> Any:
        """One recursive listing instead of fsspec's walk (a request per directory)."""
        if maxdepth is not None and maxdepth < 1:
            raise ValueError("maxdepth must be at least 1")
        path = self._strip_protocol(path)
        depth = MAX_DEPTH if maxdepth is None else maxdepth - 1
        found: dict[str, dict[str, Any]] = {}
        try:
            for entry in self.client.iter_list(path, recursive=True, max_depth=depth):
                if withdirs or not entry.is_dir:
                    found[entry.path] = _info(entry)
        except NotADirectory:
            found = {path: self.info(path)}  # a file finds itself
        except FileNotFoundError:
            return {} if detail else []
        else:
            if withdirs and path != "/":
                found[path] = self.info(path) if detail else {}
        names = sorted(found)
        return {name: found[name] for name in names} if detail else names

    def created(self, path: str) -> datetime:
        return self.modified(path)  # the API keeps one time per entry

    def modified(self, path: str) -> datetime:
        mtime = self.client.stat(self._strip_protocol(path)).mtime
        if mtime is None:
            raise OSError(f"{path}: no modification time")
        return mtime

    def checksum(self, path: str) -> int:
        info = self.client.stat(self._strip_protocol(path))
        return int(info.sha256, 16) if info.sha256 else super().checksum(path)

    def ukey(self, path: str) -> str:
        info = self.client.stat(self._strip_protocol(path))
        return info.sha256 or super().ukey(path)

    # -- the namespace ---------------------------------------------------------------------

    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        path = self._strip_protocol(path)
        if not self.client.mkdir(path, parents=create_parents, exist_ok=True):
            raise FileExistsError(path)

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        path = self._strip_protocol(path)
        if not self.client.mkdir(path, parents=True, exist_ok=True) and not exist_ok:
            raise FileExistsError(path)

    def rmdir(self, path: str) -> None:
        path = self._strip_protocol(path)
        if not self.client.stat(path).is_dir:
            raise NotADirectory("NOT_A_DIRECTORY", "not a directory", None, path)
        self.client.remove(path)

    def rm_file(self, path: str) -> None:
        self.client.remove(self._strip_protocol(path))

    def _rm(self, path: str) -> None:
        self.rm_file(path)

    def rm(self, path: Any, recursive: bool = False, maxdepth: int | None = None) -> None:
        """A recursive rm is one DELETE ?recursive=true per path the pattern names."""
        if not recursive or maxdepth is not None:
            return super().rm(path, recursive=recursive, maxdepth=maxdepth)
        targets: list[str] = []
        for item in path if isinstance(path, list) else [path]:
            found = self.glob(item) if _has_magic(str(item)) else [self._strip_protocol(item)]
            if not found and not _has_magic(str(item)):
                raise FileNotFoundError(item)
            targets += found
        removed: list[str] = []
        for target in sorted(set(targets)):
            if any(paths.is_within(target, done) for done in removed):
                continue  # went with its directory
            self.client.remove(target, recursive=True)
            removed.append(target)
        return None

    def mv(self, path1: Any, path2: Any, recursive: bool = False, maxdepth: int | None = None,
           **kwargs: Any) -> None:
        """A server-side move (directories with their subtree) for one literal path; patterns
        and lists go through fsspec's copy-and-delete."""
        if not (isinstance(path1, str) and isinstance(path2, str)) or _has_magic(path1) \
                or maxdepth is not None:
            return super().mv(path1, path2, recursive=recursive, maxdepth=maxdepth, **kwargs)
        source, dest = self._strip_protocol(path1), self._strip_protocol(path2)
        if source == dest:
            return None
        if path2.endswith("/") or self.isdir(dest):
            dest = paths.join(dest, paths.basename(source))
        self.client.move(source, dest, overwrite=True, create_parents=True)
        return None

    def cp_file(self, path1: str, path2: str, **kwargs: Any) -> None:
        """A server-side copy; a directory (fsspec copies trees entry by entry) is made."""
        source, dest = self._strip_protocol(path1), self._strip_protocol(path2)
        try:
            self.client.copy(source, dest)
        except IsADirectory:
            self.makedirs(dest, exist_ok=True)

    def sign(self, path: str, expiration: int = 100, **kwargs: Any) -> str:
        """A single-use download link, valid `expiration` seconds (1...86400)."""
        return self.client.create_link(self._strip_protocol(path), expiration).url

    # -- bytes ---------------------------------------------------------------------------

    def cat_file(self, path: str, start: int | None = None, end: int | None = None,
                 **kwargs: Any) -> bytes:
        path = self._strip_protocol(path)
        if (start is not None and start < 0 and end is not None) or (end is not None and end < 0):
            size = self.info(path)["size"] or 0
            start = None if start is None else (start if start >= 0 else max(0, size + start))
            end = end if end >= 0 else size + end
        return self.client.read(path, start, end)

    def pipe_file(self, path: str, value: bytes, mode: str = "overwrite",
                  **kwargs: Any) -> None:
        self.client.upload(value, self._strip_protocol(path), create_only=mode == "create")

    def put_file(self, lpath: str, rpath: str, callback: Any = DEFAULT_CALLBACK,
                 mode: str = "overwrite", **kwargs: Any) -> None:
        rpath = self._strip_protocol(rpath)
        if os.path.isdir(lpath):
            self.makedirs(rpath, exist_ok=True)
            return
        callback.set_size(os.path.getsize(lpath))
        self.client.upload(lpath, rpath, create_only=mode == "create",
                           progress=callback.relative_update)

    def get_file(self, rpath: str, lpath: Any, callback: Any = DEFAULT_CALLBACK,
                 outfile: Any = None, **kwargs: Any) -> None:
        rpath = self._strip_protocol(rpath)
        if outfile is None and hasattr(lpath, "write"):
            outfile = lpath
        if outfile is not None:
            self.client.download(rpath, outfile, progress=callback.relative_update)
            return
        os.makedirs(os.path.dirname(os.path.abspath(lpath)), exist_ok=True)
        try:
            self.client.download(rpath, lpath, progress=callback.relative_update)
        except IsADirectory:
            os.makedirs(lpath, exist_ok=True)  # fsspec's get() copies trees entry by entry

    def touch(self, path: str, truncate: bool = True, **kwargs: Any) -> None:
        path = self._strip_protocol(path)
        if truncate or not self.exists(path):
            self.client.upload(b"", path)
        else:
            # fsspec's way of saying a filesystem lacks an operation (its own touch() raises
            # the same): the API has no utime, and rewriting the bytes would not be a touch.
            raise NotImplementedError("CallFS cannot change a file's time without its bytes")

    def _open(self, path: str, mode: str = "rb", block_size: int | None = None,
              autocommit: bool = True, cache_options: dict | None = None,
              **kwargs: Any) -> CallFSFile:
        path = self._strip_protocol(path)
        if mode == "ab":
            # fsspec's way of saying a filesystem lacks a mode: the API replaces a file's bytes
            # whole, never in part.
            raise NotImplementedError("CallFS cannot append to a file")
        if mode == "xb" and self.exists(path):
            raise FileExistsError(path)
        return CallFSFile(self, path, mode, block_size or "default", autocommit,
                          cache_options=cache_options, **kwargs)


def _has_magic(path: str) -> bool:
    return any(char in path for char in "*?[")


class CallFSFile(AbstractBufferedFile):
    """A file of a CallFSFileSystem: reads by Range, writes as one streamed upload. Without
    autocommit (fsspec transactions) the bytes go to a hidden sibling first and `commit()`
    moves them into place (an atomic rename on the server)."""

    def __init__(self, fs: CallFSFileSystem, path: str, mode: str = "rb", *args: Any,
                 **kwargs: Any) -> None:
        super().__init__(fs, path, mode, *args, **kwargs)
        self.client = fs.client
        self._stream: StreamedUpload | None = None
        self._etag = None
        if mode == "rb":
            if self.details["type"] == "directory":
                raise IsADirectory("IS_A_DIRECTORY", "is a directory", None, path)
            self._etag = self.details.get("etag")
        self._target = path
        if mode != "rb" and not self.autocommit:
            hidden = f".{paths.basename(path)}.callfs-{secrets.token_hex(4)}"
            self._target = paths.join(paths.parent(path), hidden)

    def _fetch_range(self, start: int, end: int) -> bytes:
        if start >= end:
            return b""
        try:
            return self.client.read(self.path, start, end, if_match=self._etag)
        except PreconditionFailed:
            raise PreconditionFailed("PRECONDITION_FAILED", "the file changed while being read",
                                     412, self.path) from None

    def _initiate_upload(self) -> None:
        """Nothing yet: a file that fits in one block goes as one plain PUT at close."""

    def _upload_chunk(self, final: bool = False) -> bool:
        data = self.buffer.getvalue()
        create_only = self.mode == "xb" and self.autocommit
        if final and self._stream is None:
            try:
                self.client.upload(data, self._target, create_only=create_only)
            except AlreadyExists:
                raise FileExistsError(self.path) from None
        else:
            if self._stream is None:
                self._stream = StreamedUpload(self.client, self._target,
                                               create_only=create_only)
            if data:
                self._stream.send(data)
            if final:
                try:
                    self._stream.finish()
                except AlreadyExists:
                    raise FileExistsError(self.path) from None
        if final and self.autocommit:
            self.commit()
        return True

    def commit(self) -> None:
        if self._target != self.path:
            try:
                self.client.move(self._target, self.path, overwrite=self.mode != "xb",
                                 create_parents=True)
            except AlreadyExists:
                self.discard()
                raise FileExistsError(self.path) from None

    def discard(self) -> None:
        """Drop what was written: abort the upload, or remove the hidden sibling."""
        if self._stream is not None:
            self._stream.abort()
        elif self._target != self.path:
            try:
                self.client.remove(self._target)
            except NotFound:
                pass

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        if exc_type is not None and self.writable():
            # Leaving a `with` by an exception stores nothing (fsspec's default would close,
            # committing whatever part had been written).
            try:
                if self._stream is not None:
                    self._stream.abort()
            finally:
                self.closed = True
            return
        self.close()

"""`Client`: the CallFS /v1 API (files, directories, links) over pooled HTTP connections
(callfs_client.wire says which requests are retried). A download that breaks off mid-body goes
on from where it stopped with a Range request, pinned to the same version by If-Range."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any, BinaryIO
from urllib.parse import parse_qs, urlsplit

import requests

from callfs_client.bodies import (
    CHUNK,
    CountedBody,
    DownloadSink,
    FileBody,
    Progress,
    hash_file,
    read_chunks,
    seekable,
)
from callfs_client.errors import (
    AlreadyExists,
    CallFSError,
    ChecksumMismatch,
    IsADirectory,
    NotADirectory,
    NotFound,
)
from callfs_client.models import CreatedLink, FileInfo, Link, Transfer, parse_time
from callfs_client.paths import normalize, parent, quote_path
from callfs_client.wire import (
    HEX64,
    Transport,
    directories_url,
    files_url,
    if_match_value,
    link_id_path,
    range_header,
    refuse_directory,
    response_chunks,
    transport_error,
)

Source = bytes | bytearray | memoryview | str | os.PathLike | BinaryIO | Iterable[bytes]

MAX_DEPTH = 1000  # the deepest recursive listing the server gives (max_depth is capped there)
SHA256_HEADER = "X-CallFS-SHA256"


class Client(Transport):
    """A CallFS server at `url` (`http://host:8000`), as the owner of API key `key`.

    Paths are remote absolute paths (`/data/x.csv`; `callfs:///data/x.csv` works too). Every
    failure raises a `callfs_client.errors.CallFSError` with the API's `code`, `message` and
    `status`; the client is a context manager that closes its connections. Options: `retries`
    (3) and `backoff` (0.5 s, doubling) for requests that are safe to repeat, `timeout`
    ((connect, read) = (10, 300) s), `verify` (TLS: True, False or a CA bundle path),
    `page_size` (listing entries per request, 1000)."""

    # -- metadata -------------------------------------------------------------------------

    def stat(self, path: str) -> FileInfo:
        """Every metadata field of a file or directory (a HEAD): type, size, mode, owner,
        group, mtime, and for files you may read their sha256 and ETag; `node` holds the
        bytes."""
        remote = normalize(path)
        response = self._request("HEAD", files_url(remote), path=remote)
        return FileInfo.from_headers(remote, response.headers)

    def exists(self, path: str) -> bool:
        try:
            self.stat(path)
        except NotFound:
            return False
        return True

    def iter_list(self, path: str = "/", *, recursive: bool = False,
                  max_depth: int | None = None,
                  page_size: int | None = None) -> Iterator[FileInfo]:
        """A directory's entries, read a page at a time when the server offers pages
        (`next_cursor`), else in one answer. `recursive` lists the whole subtree (children
        first, then each subdirectory's subtree), `max_depth` levels below the children
        (0: the children only; None: as deep as the server goes, 1000 levels)."""
        remote = normalize(path)
        params: dict[str, Any] = {"limit": page_size or self.page_size}
        if recursive:
            params["recursive"] = "true"
            params["max_depth"] = MAX_DEPTH if max_depth is None else max_depth
        while True:
            response = self._request("GET", directories_url(remote), params=params, path=remote)
            data = response.json()
            for entry in data.get("items", []):
                yield FileInfo.from_entry(entry)
            cursor = data.get("next_cursor")
            if not cursor:
                return
            params["cursor"] = cursor

    def list(self, path: str = "/", *, recursive: bool = False,
             max_depth: int | None = None) -> list[FileInfo]:
        """`iter_list` as a list."""
        return list(self.iter_list(path, recursive=recursive, max_depth=max_depth))

    # -- bytes --------------------------------------------------------------------------------

    def iter_bytes(self, path: str, start: int | None = None, end: int | None = None, *,
                   chunk_size: int = CHUNK, if_match: str | None = None) -> Iterator[bytes]:
        """A file's bytes `[start, end)` as they arrive (Range request when given; a negative
        `start` without `end` is the last -start bytes). `if_match` (an ETag or sha256) makes
        the read fail with PreconditionFailed if the file has changed since."""
        remote = normalize(path)
        header = range_header(start, end)
        if header == "":
            return
        headers = {"Range": header} if header else {}
        if if_match:
            headers["If-Match"] = if_match_value(if_match)
        try:
            response = self._request("GET", files_url(remote), headers=headers, stream=True,
                                     path=remote)
        except CallFSError as exc:
            if exc.code == "RANGE_NOT_SATISFIABLE":
                return  # the range starts at or past the end: no bytes, as a slice gives
            raise
        with response:
            refuse_directory(response, remote)
            skip, limit = 0, None
            if header and response.status_code == 200 and start is not None and start >= 0:
                skip = start  # a server that ignores Range: cut the slice out here
                limit = None if end is None else end - start
            for chunk in response_chunks(response, chunk_size, self.url):
                if skip:
                    cut = min(skip, len(chunk))
                    chunk, skip = chunk[cut:], skip - cut
                if limit is not None:
                    chunk, limit = chunk[:limit], limit - min(limit, len(chunk))
                if chunk:
                    yield chunk
                if limit == 0:
                    return

    def read(self, path: str, start: int | None = None, end: int | None = None, *,
             if_match: str | None = None) -> bytes:
        """A file's bytes `[start, end)` in memory (see `iter_bytes`)."""
        return b"".join(self.iter_bytes(path, start, end, if_match=if_match))

    def download(self, path: str, dest: str | os.PathLike | IO[bytes], *, resume: bool = False,
                 verify: bool = True, progress: Progress | None = None,
                 chunk_size: int = CHUNK) -> Transfer:
        """Stream a file into `dest` (a local path or a binary file object). With `resume`, a
        partial local file is completed with a Range request for the rest. The result is
        checked against the server's sha256 (`verify`); a resumed file whose first part came
        from another version is downloaded again whole."""
        remote = normalize(path)
        if not isinstance(dest, (str, os.PathLike)):
            return self._receive(remote, DownloadSink(handle=dest), verify, progress, chunk_size)
        target = Path(dest)
        resumed = resume and target.is_file() and target.stat().st_size > 0
        sink = DownloadSink(path=target, resume=resumed)
        try:
            if resumed:
                sink.adopt_existing(progress)
            try:
                return self._receive(remote, sink, verify, progress, chunk_size)
            except ChecksumMismatch:
                if not resumed:
                    raise
            sink.reset(progress)  # the kept part belonged to an older version: start over
            return self._receive(remote, sink, verify, progress, chunk_size)
        finally:
            sink.close()

    def _receive(self, remote: str, sink: DownloadSink, verify: bool, progress: Progress | None,
                 chunk_size: int) -> Transfer:
        expected: str | None = None
        etag: str | None = None
        failures = 0
        while True:
            headers = {}
            if sink.offset:
                headers["Range"] = f"bytes={sink.offset}-"
                if etag:
                    headers["If-Range"] = etag
            try:
                response = self._request("GET", files_url(remote), headers=headers, stream=True,
                                         path=remote)
            except CallFSError as exc:
                if exc.code != "RANGE_NOT_SATISFIABLE" or not sink.offset:
                    raise
                info = self.stat(remote)  # the local part is as long as the file already
                if info.size != sink.offset:
                    sink.reset(progress)
                    continue
                expected = info.sha256
                break
            with response:
                refuse_directory(response, remote)
                sink.open()  # only now: a failed request leaves no empty local file behind
                if response.status_code == 200 and sink.offset:
                    sink.reset(progress)  # Range ignored or the file changed: start over
                expected = response.headers.get(SHA256_HEADER) or expected
                etag = response.headers.get("ETag") or etag
                try:
                    for chunk in response.iter_content(chunk_size):
                        sink.write(chunk)
                        if progress:
                            progress(len(chunk))
                except requests.RequestException as exc:
                    failures += 1
                    if failures > self.retries or not etag:
                        raise transport_error(exc, self.url) from exc
                    time.sleep(self.backoff * 2 ** (failures - 1))
                    continue
            break
        digest = sink.hasher.hexdigest()
        if verify and expected and digest != expected.lower():
            raise ChecksumMismatch("CHECKSUM_MISMATCH", f"the downloaded bytes hash to {digest}, "
                                   f"the server's file to {expected}", None, remote)
        return Transfer(remote, sink.offset, digest)

    def upload(self, source: Source, path: str, *, create_only: bool = False,
               if_match: str | None = None, checksum: bool = True, sha256: str | None = None,
               progress: Progress | None = None) -> Transfer:
        """Store `source` (bytes, a local path, a binary file object or an iterable of bytes)
        at `path`, streamed, creating missing parent directories. Overwrites unless
        `create_only` (then AlreadyExists if anything is there); `if_match` (an ETag or sha256)
        overwrites only that version (else PreconditionFailed). The body's sha256 is sent as
        X-CallFS-SHA256 so the server stores nothing if other bytes arrive; for an iterable it
        is sent only when given as `sha256`."""
        remote = normalize(path)
        headers: dict[str, str] = {}
        if if_match:
            headers["If-Match"] = if_match_value(if_match)
        method = "POST" if create_only else "PUT"
        if isinstance(source, (str, os.PathLike)):
            with open(source, "rb") as handle:
                return self.upload(handle, remote, create_only=create_only, if_match=if_match,
                                   checksum=checksum, sha256=sha256, progress=progress)
        replayable = True
        hasher = None
        if isinstance(source, (bytes, bytearray, memoryview)):
            body: Any = bytes(source)
            size: int | None = len(body)
            digest = sha256 or (hashlib.sha256(body).hexdigest() if checksum else None)
        elif hasattr(source, "read") and seekable(source):
            start = source.tell()
            digest = sha256 or (hash_file(source, start) if checksum else None)
            size = source.seek(0, os.SEEK_END) - start
            source.seek(start)
            body = FileBody(source, size, progress)
        else:
            chunks = read_chunks(source) if hasattr(source, "read") else iter(source)
            hasher = hashlib.sha256()
            body = CountedBody(chunks, hasher, progress)
            size, digest, replayable = None, sha256, False
        if digest:
            if not HEX64.fullmatch(digest):
                raise ValueError("sha256 must be 64 hexadecimal characters")
            headers[SHA256_HEADER] = digest.lower()
        response = self._request(method, files_url(remote), data=body, headers=headers,
                                 path=remote, safe=replayable and not create_only)
        if progress and isinstance(body, bytes):
            progress(len(body))
        if hasher is not None:
            size, digest = body.size, hasher.hexdigest()
        return Transfer(remote, size or 0, digest, created=response.status_code == 201)

    # -- the namespace ---------------------------------------------------------------------

    def mkdir(self, path: str, *, parents: bool = False, exist_ok: bool = False) -> bool:
        """Make a directory; True if it was created. Without `parents` its parent must exist;
        without `exist_ok` an existing directory raises AlreadyExists (an existing file at
        `path` always does)."""
        remote = normalize(path)
        if not parents and remote != "/":
            above = self.stat(parent(remote))
            if not above.is_dir:
                raise NotADirectory("NOT_A_DIRECTORY", "not a directory", None, above.path)
        created = False
        if remote != "/":  # a trailing slash asks for a directory; 200 says it existed
            created = self._request("POST", files_url(remote) + "/", path=remote).status_code == 201
        if not created and not exist_ok:
            raise AlreadyExists("FILE_ALREADY_EXISTS", "the directory exists", None, remote)
        return created

    def remove(self, path: str, *, recursive: bool = False, if_match: str | None = None) -> None:
        """Delete a file or an empty directory; `recursive` deletes a directory's whole
        subtree (each entry checked as `rm -r` would)."""
        remote = normalize(path)
        headers = {"If-Match": if_match_value(if_match)} if if_match else {}
        params = {"recursive": "true"} if recursive else {}
        self._request("DELETE", files_url(remote), params=params, headers=headers, path=remote)

    def move(self, source: str, dest: str, *, overwrite: bool = False,
             create_parents: bool = False, if_match: str | None = None) -> str:
        """Move a file or a directory (with its subtree) to `dest`; returns the new path.
        `overwrite` replaces an existing destination of the same type (an empty directory);
        `create_parents` makes missing directories above `dest`."""
        src, dst = normalize(source), normalize(dest)
        headers = {"If-Match": if_match_value(if_match)} if if_match else {}
        response = self._request("PATCH", files_url(src), json={
            "destination": dst, "overwrite": overwrite, "create_parents": create_parents,
        }, headers=headers, path=src, safe=False)
        return response.json()["path"]

    def rename(self, path: str, name: str) -> str:
        """Rename an entry within its directory; returns the new path."""
        if not name or "/" in name or name in (".", ".."):
            raise ValueError(f"{name!r}: a new name is a single path segment")
        remote = normalize(path)
        return self._request("PATCH", files_url(remote), json={"name": name}, path=remote,
                             safe=False).json()["path"]

    def copy(self, source: str, dest: str, *, overwrite: bool = True) -> bool:
        """Copy a file inside the server (no bytes travel through the client); True if `dest`
        was created. Without `overwrite` an existing `dest` raises AlreadyExists."""
        src, dst = normalize(source), normalize(dest)
        try:
            response = self._request(
                "PUT" if overwrite else "POST", files_url(dst), path=dst, safe=overwrite,
                headers={"X-CallFS-Copy-Source": "/" + quote_path(src)}, data=b"")
        except (NotFound, IsADirectory) as exc:
            exc.path = src  # only the source can be missing (parents are made) or a directory
            raise
        return response.status_code == 201

    def chmod(self, path: str, mode: int | str) -> FileInfo:
        """Set the permission bits (`0o640` or `"0640"`); returns the entry as it is now."""
        value = mode if isinstance(mode, str) else f"{mode:04o}"
        return self._patch_metadata(path, {"mode": value})

    def chown(self, path: str, owner: str | None = None, group: str | None = None) -> FileInfo:
        """Change the owner (superusers only) and/or the group (the owner, to a group they
        are in); returns the entry as it is now."""
        change = {key: value for key, value in (("owner", owner), ("group", group)) if value}
        if not change:
            raise ValueError("chown needs an owner, a group or both")
        return self._patch_metadata(path, change)

    def chgrp(self, path: str, group: str) -> FileInfo:
        return self.chown(path, group=group)

    def _patch_metadata(self, path: str, change: dict[str, str]) -> FileInfo:
        remote = normalize(path)
        response = self._request("PATCH", files_url(remote), json=change, path=remote)
        return FileInfo.from_entry(response.json())

    # -- download links ----------------------------------------------------------------------

    def create_link(self, path: str, expires: int = 3600) -> CreatedLink:
        """A single-use public URL for a file, valid `expires` seconds (1...86400)."""
        remote = normalize(path)
        data = self._request("POST", "/v1/links/generate", path=remote,
                             json={"path": remote, "expiry_seconds": int(expires)}).json()
        # A retried generation (429 or a lost answer) makes at most an unused extra link.
        return CreatedLink(url=data["url"], token=data["token"], path=remote,
                           expires_at=parse_time(data.get("expires_at") or data.get("expires")))

    def list_links(self) -> list[Link]:
        """Your download links (a superuser's: everyone's), every page."""
        links: list[Link] = []
        params: dict[str, Any] = {"limit": 1000}
        while True:
            data = self._request("GET", "/v1/links/", params=params).json()
            links.extend(Link.from_record(record) for record in data.get("results", []))
            following = data.get("next")
            if not following:
                return links
            # Only the page position is taken from `next`: its host is whatever the server
            # thinks it is called, and the key goes nowhere but self.url.
            query = parse_qs(urlsplit(following).query)
            params = {name: values[0] for name, values in query.items()}

    def get_link(self, link_id: str) -> Link:
        return Link.from_record(self._request("GET", f"/v1/links/{link_id_path(link_id)}").json())

    def revoke_link(self, link_id: str) -> None:
        """Revoke a link: its URL answers 410 from now on."""
        self._request("DELETE", f"/v1/links/{link_id_path(link_id)}")

    def health(self) -> dict[str, Any]:
        """GET /health (no key needed): `{"status": "ok"}` when the server runs."""
        return self._request("GET", "/health").json()

"""The HTTP side of the client: pooled sessions with their retry rules, requests turned into
answers or CallFSErrors, and the small encoders of paths, ranges and validators.

Retries: a request that is safe to repeat (GET, HEAD, a PUT whose body can be sent again, a
DELETE, a metadata PATCH, mkdir, copy, link generation) is retried with exponential backoff on
connection errors and on 429/502/503 answers, `retries` times at most. Everything else (a POST
that creates a file, a move, an upload whose body is a one-shot iterator) is retried only when
the connection could not even be opened, so nothing is ever sent twice.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from callfs_client._version import __version__
from callfs_client.errors import (
    CallFSError,
    ConnectionFailed,
    IsADirectory,
    code_for_status,
    error_for,
)
from callfs_client.paths import quote_path

DEFAULT_TIMEOUT = (10.0, 300.0)  # (connect, read) seconds
PAGE_SIZE = 1000  # listing entries asked for per page
RETRY_STATUSES = frozenset({429, 502, 503})
HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_ERRNO_TEXT = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")


class Transport:
    """Two pooled sessions to one server, as the owner of one key: one retries what is safe
    to repeat, the other only what never left (see the module docstring)."""

    def __init__(self, url: str, key: str, *, retries: int = 3, backoff: float = 0.5,
                 timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
                 verify: bool | str = True, page_size: int = PAGE_SIZE) -> None:
        if not url:
            raise ValueError("a server URL is required, e.g. http://127.0.0.1:8000")
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"{url!r}: the server URL must start with http:// or https://")
        if not key:
            raise ValueError("an API key is required")
        self.url = url.rstrip("/")
        self.retries = max(0, int(retries))
        self.backoff = backoff
        self.timeout = timeout
        self.page_size = page_size
        retry = Retry(total=self.retries, connect=self.retries, read=self.retries,
                      status=self.retries, other=0, allowed_methods=None,
                      status_forcelist=RETRY_STATUSES, backoff_factor=backoff,
                      raise_on_status=False, respect_retry_after_header=True)
        # Connection-phase failures only: the request never left, so any method may go again.
        connect_only = Retry(total=self.retries, connect=self.retries, read=0, status=0, other=0,
                             allowed_methods=None, backoff_factor=backoff,
                             raise_on_status=False)
        self._retrying = self._session(key, verify, retry)
        self._once = self._session(key, verify, connect_only)

    @staticmethod
    def _session(key: str, verify: bool | str, retry: Retry) -> requests.Session:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {key}"
        agent = session.headers["User-Agent"]
        session.headers["User-Agent"] = f"callfs-client/{__version__} {agent}"
        session.verify = verify
        adapter = HTTPAdapter(max_retries=retry, pool_maxsize=16)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        return session

    def __repr__(self) -> str:
        return f"<callfs_client.Client {self.url}>"  # never the key

    def close(self) -> None:
        """Close the pooled connections now. (urllib3's PoolManager.clear() only forgets its
        pools; their sockets would stay open while anything, such as a kept exception's
        traceback, still refers to them, and a server stopping gracefully waits for them.)"""
        for session in (self._retrying, self._once):
            for adapter in {id(a): a for a in session.adapters.values()}.values():
                pools = getattr(getattr(adapter, "poolmanager", None), "pools", None)
                for key in pools.keys() if pools is not None else ():
                    pool = pools.get(key)
                    if pool is not None:
                        pool.close()
            session.close()

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _request(self, method: str, target: str, *, path: str | None = None, safe: bool = True,
                 **kwargs: Any) -> requests.Response:
        """Send a request (retried per `safe`, see the module docstring); any error answer or
        transport failure becomes a CallFSError."""
        session = self._retrying if safe else self._once
        try:
            response = session.request(method, self.url + target, timeout=self.timeout,
                                       **kwargs)
        except requests.RequestException as exc:
            raise transport_error(exc, self.url) from exc
        if response.status_code < 400:
            return response
        if method == "DELETE" and response.status_code == 404 and was_retried(response):
            return response  # the first attempt deleted it and its answer got lost
        raise self._error(response, method, target, path)

    def _error(self, response: requests.Response, method: str, target: str,
               path: str | None) -> CallFSError:
        status = response.status_code
        code = message = None
        if method == "HEAD" and status < 500 and status not in (401, 403, 404):
            # HEAD answers have no body; the GET of the same path says what went wrong.
            try:
                self._request("GET", target, stream=True, path=path).close()
            except CallFSError as exc:
                return exc
        elif method != "HEAD":
            try:
                body = response.json()
            except ValueError:
                body = None
            if isinstance(body, dict):
                code, message = body.get("code"), body.get("message")
        response.close()
        code = code if isinstance(code, str) and code else code_for_status(status)
        if not isinstance(message, str) or not message:
            message = _MESSAGES.get(code) or response.reason or f"HTTP {status}"
        return error_for(code, message, status, path)


_MESSAGES = {"FILE_NOT_FOUND": "no such file or directory",
             "PERMISSION_DENIED": "permission denied",
             "AUTHENTICATION_FAILED": "authentication failed"}


def files_url(remote: str) -> str:
    return "/v1/files/" + quote_path(remote)


def directories_url(remote: str) -> str:
    return "/v1/directories/" + quote_path(remote)


def link_id_path(link_id: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_-]+", link_id or ""):
        raise ValueError(f"{link_id!r} is not a link id")
    return link_id


def if_match_value(value: str) -> str:
    """An If-Match value: an ETag as given, or a bare sha256 made into one."""
    value = value.strip()
    return f'"{value.lower()}"' if HEX64.fullmatch(value) else value


def range_header(start: int | None, end: int | None) -> str | None:
    """The Range header of the slice [start, end): None for the whole file, "" for none."""
    if start is None and end is None:
        return None
    if start is not None and start < 0:
        if end is not None:
            raise ValueError("a negative start (the last bytes) takes no end")
        return f"bytes={start}"
    start = start or 0
    if end is None:
        return f"bytes={start}-" if start else None
    if end < 0:
        raise ValueError("end must not be negative")
    if end <= start:
        return ""
    return f"bytes={start}-{end - 1}"


def refuse_directory(response: requests.Response, remote: str) -> None:
    if response.headers.get("X-CallFS-Type") == "directory":
        raise IsADirectory("IS_A_DIRECTORY", "is a directory", None, remote)


def response_chunks(response: requests.Response, size: int, url: str) -> Iterator[bytes]:
    try:
        yield from response.iter_content(size)
    except requests.RequestException as exc:
        raise transport_error(exc, url) from exc


def was_retried(response: requests.Response) -> bool:
    retries = getattr(response.raw, "retries", None)
    return bool(retries is not None and retries.history)


def transport_error(exc: requests.RequestException, url: str) -> ConnectionFailed:
    """One readable line for a failure without an answer: `cannot reach URL: connection
    refused`, `... timed out`, `connection to URL broken`."""
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return ConnectionFailed("CONNECTION_ERROR", f"connection to {url} broken mid-transfer")
    found = _ERRNO_TEXT.search(str(exc))
    if isinstance(exc, requests.Timeout):
        reason = "timed out"
    elif found:
        reason = found.group(1).strip()
        reason = reason[:1].lower() + reason[1:]
    elif isinstance(exc, requests.exceptions.SSLError):
        reason = "TLS handshake failed"
    else:
        reason = type(exc).__name__
    return ConnectionFailed("CONNECTION_ERROR", f"cannot reach {url}: {reason}")

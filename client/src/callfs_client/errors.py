"""Every failure is a CallFSError carrying the API's `code`, `message` and HTTP `status` (None for
errors raised before an answer, such as a refused connection). Errors with a POSIX meaning are
also the matching built-in (`FileNotFoundError`, `PermissionError`, ...), so code written for
files, fsspec and pandas handle them as they handle local ones."""

from __future__ import annotations

import errno as errnos


class CallFSError(OSError):
    """An error answered by the server (`status` set) or met on the way to it."""

    errno_value = errnos.EIO

    def __init__(self, code: str, message: str, status: int | None = None,
                 path: str | None = None) -> None:
        super().__init__(self.errno_value, message, path)
        self.code = code
        self.message = message
        self.status = status
        self.path = path

    def __str__(self) -> str:
        prefix = f"{self.path}: " if self.path else ""
        return f"{prefix}{self.message} ({self.code})"

    def __reduce__(self):
        return type(self), (self.code, self.message, self.status, self.path)


class NotFound(CallFSError, FileNotFoundError):
    errno_value = errnos.ENOENT


class AlreadyExists(CallFSError, FileExistsError):
    errno_value = errnos.EEXIST


class PermissionDenied(CallFSError, PermissionError):
    errno_value = errnos.EACCES


class AuthenticationFailed(CallFSError, PermissionError):
    errno_value = errnos.EACCES


class NotADirectory(CallFSError, NotADirectoryError):
    errno_value = errnos.ENOTDIR


class IsADirectory(CallFSError, IsADirectoryError):
    errno_value = errnos.EISDIR


class DirectoryNotEmpty(CallFSError):
    errno_value = errnos.ENOTEMPTY


class InvalidRequest(CallFSError):
    errno_value = errnos.EINVAL


class PreconditionFailed(CallFSError):
    """If-Match (or If-None-Match) did not hold: the file changed or exists."""


class ChecksumMismatch(CallFSError):
    """The bytes that arrived hash differently from what was sent or announced."""


class LinkExpired(CallFSError):
    pass


class Unavailable(CallFSError):
    """The server or a node behind it is busy or down (429, 502, 503), after any retries."""

    errno_value = errnos.EAGAIN


class ConnectionFailed(CallFSError, ConnectionError):
    """No answer: the server could not be reached, or the connection broke or timed out."""

    errno_value = errnos.ECONNREFUSED


_BY_CODE: dict[str, type[CallFSError]] = {
    "FILE_NOT_FOUND": NotFound,
    "NOT_FOUND": NotFound,
    "LINK_NOT_FOUND": NotFound,
    "FILE_ALREADY_EXISTS": AlreadyExists,
    "PERMISSION_DENIED": PermissionDenied,
    "AUTHENTICATION_FAILED": AuthenticationFailed,
    "NOT_A_DIRECTORY": NotADirectory,
    "IS_A_DIRECTORY": IsADirectory,
    "DIRECTORY_NOT_EMPTY": DirectoryNotEmpty,
    "INVALID_PATH": InvalidRequest,
    "INVALID_REQUEST": InvalidRequest,
    "BAD_REQUEST": InvalidRequest,
    "PRECONDITION_FAILED": PreconditionFailed,
    "CHECKSUM_MISMATCH": ChecksumMismatch,
    "LINK_EXPIRED": LinkExpired,
    "RATE_LIMIT_EXCEEDED": Unavailable,
    "LOCK_TIMEOUT": Unavailable,
    "NODE_UNAVAILABLE": Unavailable,
    "SERVICE_UNAVAILABLE": Unavailable,
    "CONNECTION_ERROR": ConnectionFailed,
}

# The code of an answer without a JSON body (HEAD has none; a proxy may send HTML).
_BY_STATUS = {
    400: "BAD_REQUEST", 401: "AUTHENTICATION_FAILED", 403: "PERMISSION_DENIED",
    404: "FILE_NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 409: "FILE_ALREADY_EXISTS",
    410: "LINK_EXPIRED", 411: "LENGTH_REQUIRED", 412: "PRECONDITION_FAILED",
    413: "PAYLOAD_TOO_LARGE", 416: "RANGE_NOT_SATISFIABLE", 429: "RATE_LIMIT_EXCEEDED",
    500: "INTERNAL_ERROR", 502: "NODE_UNAVAILABLE", 503: "SERVICE_UNAVAILABLE",
}


def error_for(code: str, message: str, status: int | None = None,
              path: str | None = None) -> CallFSError:
    """The exception of the right class for an API error code."""
    return _BY_CODE.get(code, CallFSError)(code, message, status, path)


def code_for_status(status: int) -> str:
    return _BY_STATUS.get(status, f"HTTP_{status}")

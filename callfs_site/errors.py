"""One error shape, `{"code": "...", "message": "..."}`, for every failure the server answers.

Every `code` is a member of `ErrorCode`, the one list of them: the exception classes, the
handler, the OpenAPI schema (callfs_site.schema) and the tests take theirs from it. Errors are
raised as `CallFSError` subclasses (each app's `exceptions.py`) and turned into JSON by
`exception_handler` (DRF views) or `error_response` (plain Django views, 404/500 handlers).
"""

from __future__ import annotations

import json
import logging
from enum import StrEnum
from typing import Any

from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import Http404, HttpResponse
from rest_framework import exceptions as drf

from callfs_site.db import is_lock_wait_timeout

logger = logging.getLogger(__name__)


class ErrorCode(StrEnum):
    """The `code` of every error answer: each value is the string on the wire, each `meaning`
    (status and cause) is what the OpenAPI schema says of it."""

    meaning: str

    def __new__(cls, code: str, meaning: str) -> ErrorCode:
        member = str.__new__(cls, code)
        member._value_ = code
        member.meaning = meaning
        return member

    # Upstream's (API.md §6.2).
    AUTHENTICATION_FAILED = "AUTHENTICATION_FAILED", "401: a missing or wrong API key"
    PERMISSION_DENIED = "PERMISSION_DENIED", "403: the caller may not do this"
    FILE_NOT_FOUND = "FILE_NOT_FOUND", "404: the path (or a link's file) does not exist"
    FILE_ALREADY_EXISTS = "FILE_ALREADY_EXISTS", "409: the path exists already"
    BAD_REQUEST = "BAD_REQUEST", "400: a PATCH body that cannot be used"
    RATE_LIMIT_EXCEEDED = "RATE_LIMIT_EXCEEDED", "429: too many requests; see Retry-After"
    INTERNAL_ERROR = "INTERNAL_ERROR", "500: a fault in the server; the message says no more"
    # This project's specific codes (API.md §16.1, §16.3).
    INVALID_PATH = "INVALID_PATH", "400: the path is not valid"
    INVALID_REQUEST = "INVALID_REQUEST", "400: a parameter, header or body is not valid"
    NOT_A_DIRECTORY = "NOT_A_DIRECTORY", "400: a directory operation on a file"
    IS_A_DIRECTORY = "IS_A_DIRECTORY", "400: a file operation on a directory"
    CHECKSUM_MISMATCH = ("CHECKSUM_MISMATCH",
                         "400: the bytes do not match X-CallFS-SHA256; nothing was stored")
    DIRECTORY_NOT_EMPTY = ("DIRECTORY_NOT_EMPTY",
                           "409: deleting a directory with entries, without recursive=true")
    LINK_NOT_FOUND = "LINK_NOT_FOUND", "404: no such download link (or token)"
    LINK_EXPIRED = "LINK_EXPIRED", "410: the download link was used, expired or revoked"
    LENGTH_REQUIRED = "LENGTH_REQUIRED", "411: an upload whose body cannot be read"
    PRECONDITION_FAILED = "PRECONDITION_FAILED", "412: If-Match or If-None-Match did not hold"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE", "413: a body over CALLFS_MAX_UPLOAD_BYTES"
    RANGE_NOT_SATISFIABLE = ("RANGE_NOT_SATISFIABLE",
                             "416: the Range lies outside the file; see Content-Range")
    LOCK_TIMEOUT = ("LOCK_TIMEOUT",
                    "503: a path or database lock stayed busy past CALLFS_LOCK_TIMEOUT")
    NODE_UNAVAILABLE = "NODE_UNAVAILABLE", "502 or 503: the node holding the bytes is unreachable"
    SERVICE_UNAVAILABLE = ("SERVICE_UNAVAILABLE",
                           "503: the database, Redis or a storage backend is unavailable")
    # A URL no view serves, a method the view does not take.
    NOT_FOUND = "NOT_FOUND", "404: no such URL"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED", "405: a method the URL does not take; see Allow"
    # Requests gunicorn refuses before the application sees them (callfs_site.workers).
    URI_TOO_LONG = "URI_TOO_LONG", "414: a request line over the server's limit"
    EXPECTATION_FAILED = "EXPECTATION_FAILED", "417: an Expect header other than 100-continue"
    HEADERS_TOO_LARGE = "HEADERS_TOO_LARGE", "431: request headers over the server's limits"
    NOT_IMPLEMENTED = "NOT_IMPLEMENTED", "501: a transfer coding the server does not take"


class CallFSError(drf.APIException):
    """Base of every error the API reports; subclasses set status, code and default message."""

    status_code = 500
    default_code = ErrorCode.INTERNAL_ERROR
    default_detail = "an internal error occurred"

    def __init__(self, detail: str | None = None, *, extra: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(detail if detail is not None else self.default_detail, self.default_code)
        self.extra = extra or {}  # keys merged into the JSON body (the §11.3 conflict object)
        self.headers = headers or {}  # e.g. Content-Range on a 416


class InvalidRequest(CallFSError):
    status_code = 400
    default_code = ErrorCode.INVALID_REQUEST
    default_detail = "invalid request"


class BadRequest(CallFSError):
    """Upstream's code for PATCH body problems (API.md §7.7)."""

    status_code = 400
    default_code = ErrorCode.BAD_REQUEST
    default_detail = "invalid JSON body"


class AuthenticationFailed(CallFSError):
    status_code = 401
    default_code = ErrorCode.AUTHENTICATION_FAILED
    default_detail = "authentication failed"


class PermissionDenied(CallFSError):
    status_code = 403
    default_code = ErrorCode.PERMISSION_DENIED
    default_detail = "permission denied"


class NotFound(CallFSError):
    status_code = 404
    default_code = ErrorCode.NOT_FOUND
    default_detail = "page not found"


class MethodNotAllowed(CallFSError):
    status_code = 405
    default_code = ErrorCode.METHOD_NOT_ALLOWED
    default_detail = "method not allowed"


class RateLimitExceeded(CallFSError):
    status_code = 429
    default_code = ErrorCode.RATE_LIMIT_EXCEEDED
    default_detail = "Rate limit exceeded"


class ServiceUnavailable(CallFSError):
    status_code = 503
    default_code = ErrorCode.SERVICE_UNAVAILABLE
    default_detail = "a required service is unavailable, try again later"


class LockTimeout(CallFSError):
    """Waited CALLFS_LOCK_TIMEOUT for a path lock or a database lock another change holds."""

    status_code = 503
    default_code = ErrorCode.LOCK_TIMEOUT
    default_detail = "the path is busy, try again later"


# DRF's own exceptions, mapped to ours so every body uses the spec's codes and texts.
_DRF_EQUIVALENTS: dict[type[drf.APIException], type[CallFSError]] = {
    drf.NotAuthenticated: AuthenticationFailed,
    drf.AuthenticationFailed: AuthenticationFailed,
    drf.PermissionDenied: PermissionDenied,
    drf.NotFound: NotFound,
    drf.MethodNotAllowed: MethodNotAllowed,
    drf.Throttled: RateLimitExceeded,
    drf.ParseError: InvalidRequest,
    drf.UnsupportedMediaType: InvalidRequest,
    drf.ValidationError: InvalidRequest,
}


def render_error(code: ErrorCode, message: str, extra: dict[str, Any] | None = None) -> bytes:
    """The compact JSON body of an error; `extra` keys (e.g. the conflict object) come first."""
    body = {**(extra or {}), "code": code, "message": message}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def error_response(code: ErrorCode, message: str, status: int, **headers: str) -> HttpResponse:
    """An error answer for code that runs outside DRF (URL handlers, middleware)."""
    response = HttpResponse(render_error(code, message), status=status,
                            content_type="application/json")
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


def first_message(detail: Any) -> str:
    """Flatten DRF error details to one line: 'field: first message' for validation errors."""
    if isinstance(detail, dict):
        field, value = next(iter(detail.items()))
        inner = first_message(value)
        return inner if field == "non_field_errors" else f"{field}: {inner}"
    if isinstance(detail, list):
        return first_message(detail[0]) if detail else "invalid request"
    return str(detail)


def exception_handler(exc: Exception, context: dict) -> HttpResponse | None:
    """DRF's EXCEPTION_HANDLER: every error becomes `{"code","message"}` with the right status."""
    # Imported here: rest_framework.views loads the API settings, which import our
    # authentication, which imports models whose helpers raise these errors.
    from rest_framework.views import exception_handler as drf_exception_handler
    from rest_framework.views import set_rollback

    if isinstance(exc, DatabaseError) and is_lock_wait_timeout(exc):
        exc = LockTimeout("another change holds the metadata this request needs; "
                          "try again later")
    elif isinstance(exc, (OperationalError, InterfaceError)) or (
        isinstance(exc, DatabaseError) and "connection" in str(exc).lower()
    ):
        logger.warning("database unavailable: %s", exc)
        exc = ServiceUnavailable("the metadata database is unavailable, try again later")
    elif isinstance(exc, Http404):
        exc = NotFound()
    elif not isinstance(exc, CallFSError):
        for drf_type, ours in _DRF_EQUIVALENTS.items():
            if isinstance(exc, drf_type):
                message = first_message(exc.detail)
                if ours in (AuthenticationFailed, PermissionDenied, RateLimitExceeded):
                    message = ours.default_detail  # upstream's exact texts
                converted = ours(message)
                converted.auth_header = getattr(exc, "auth_header", None)
                converted.wait = getattr(exc, "wait", None)
                exc = converted
                break

    response = drf_exception_handler(exc, context)
    if response is None:
        set_rollback()
        view = context.get("view")
        logger.exception("unhandled error in %s", type(view).__name__ if view else "view",
                         exc_info=exc)
        return error_response(ErrorCode.INTERNAL_ERROR, CallFSError.default_detail, status=500)

    extra = exc.extra if isinstance(exc, CallFSError) else None
    answer = HttpResponse(render_error(exc.default_code, first_message(exc.detail), extra),
                          status=response.status_code, content_type="application/json")
    for header in ("WWW-Authenticate", "Retry-After", "Allow", "Content-Range"):
        if response.has_header(header):
            answer[header] = response[header]
    if isinstance(exc, MethodNotAllowed) and context.get("view") is not None:
        answer["Allow"] = ", ".join(context["view"].allowed_methods)
    for header, value in getattr(exc, "headers", {}).items():
        answer[header] = value
    return answer

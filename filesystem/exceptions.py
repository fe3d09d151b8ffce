"""Errors of the filesystem API, with the codes of API.md §6.2 and §16.1."""

from callfs_site.errors import BadRequest, CallFSError, ErrorCode, InvalidRequest, PermissionDenied

__all__ = [
    "BadRequest",
    "ChecksumMismatch",
    "DirectoryNotEmpty",
    "FileAlreadyExists",
    "FileNotFound",
    "InvalidPath",
    "InvalidRequest",
    "IsADirectory",
    "LengthRequired",
    "NodeUnavailable",
    "NotADirectory",
    "PayloadTooLarge",
    "PermissionDenied",
    "PreconditionFailed",
    "RangeNotSatisfiable",
]


class InvalidPath(CallFSError):
    status_code = 400
    default_code = ErrorCode.INVALID_PATH
    default_detail = "invalid path"


class NotADirectory(CallFSError):
    status_code = 400
    default_code = ErrorCode.NOT_A_DIRECTORY
    default_detail = "not a directory"


class IsADirectory(CallFSError):
    status_code = 400
    default_code = ErrorCode.IS_A_DIRECTORY
    default_detail = "is a directory"


class ChecksumMismatch(CallFSError):
    status_code = 400
    default_code = ErrorCode.CHECKSUM_MISMATCH
    default_detail = "the uploaded bytes do not match X-CallFS-SHA256; nothing was stored"


class FileNotFound(CallFSError):
    status_code = 404
    default_code = ErrorCode.FILE_NOT_FOUND
    default_detail = "metadata not found"


class FileAlreadyExists(CallFSError):
    status_code = 409
    default_code = ErrorCode.FILE_ALREADY_EXISTS
    default_detail = "metadata already exists"


class DirectoryNotEmpty(CallFSError):
    status_code = 409
    default_code = ErrorCode.DIRECTORY_NOT_EMPTY
    default_detail = "directory not empty"


class LengthRequired(CallFSError):
    status_code = 411
    default_code = ErrorCode.LENGTH_REQUIRED
    default_detail = "a Content-Length or chunked request body is required"


class PreconditionFailed(CallFSError):
    status_code = 412
    default_code = ErrorCode.PRECONDITION_FAILED
    default_detail = "precondition failed"


class PayloadTooLarge(CallFSError):
    status_code = 413
    default_code = ErrorCode.PAYLOAD_TOO_LARGE
    default_detail = "request body is larger than the upload limit"


class RangeNotSatisfiable(CallFSError):
    status_code = 416
    default_code = ErrorCode.RANGE_NOT_SATISFIABLE
    default_detail = "requested range not satisfiable"


class NodeUnavailable(CallFSError):
    status_code = 502
    default_code = ErrorCode.NODE_UNAVAILABLE
    default_detail = "the node holding this file is unavailable"

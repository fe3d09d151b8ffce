"""Errors of cluster coordination (locks, peers)."""

from callfs_site.errors import CallFSError, ErrorCode, ServiceUnavailable

__all__ = ["LockTimeout", "ServiceUnavailable"]


class LockTimeout(CallFSError):
    status_code = 503
    default_code = ErrorCode.LOCK_TIMEOUT
    default_detail = "the path is busy, try again later"

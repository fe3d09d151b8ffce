"""Errors of the download-link API, with the codes of API.md §16.1."""

from callfs_site.errors import CallFSError, ErrorCode, InvalidRequest

__all__ = ["InvalidRequest", "LinkExpired", "LinkNotFound"]


class LinkNotFound(CallFSError):
    """An unknown, malformed or forged token, or a link record the user may not see."""

    status_code = 404
    default_code = ErrorCode.LINK_NOT_FOUND
    default_detail = "link not found"


class LinkExpired(CallFSError):
    """A link past its expiry, already used, or revoked: it will never download again."""

    status_code = 410
    default_code = ErrorCode.LINK_EXPIRED
    default_detail = "link expired"

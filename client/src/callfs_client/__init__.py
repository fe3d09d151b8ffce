"""A Python client, a `callfs` command line and an fsspec filesystem for CallFS servers.

    from callfs_client import Client
    with Client("http://127.0.0.1:8000", key) as fs:
        fs.upload(b"hello", "/docs/hello.txt")
        print(fs.stat("/docs/hello.txt").sha256)
"""

from callfs_client._version import __version__
from callfs_client.client import Client
from callfs_client.errors import (
    AlreadyExists,
    AuthenticationFailed,
    CallFSError,
    ChecksumMismatch,
    ConnectionFailed,
    DirectoryNotEmpty,
    InvalidRequest,
    IsADirectory,
    LinkExpired,
    NotADirectory,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
    Unavailable,
)
from callfs_client.models import CreatedLink, FileInfo, Link, Transfer

__all__ = [
    "AlreadyExists", "AuthenticationFailed", "CallFSError", "ChecksumMismatch", "Client",
    "ConnectionFailed", "CreatedLink", "DirectoryNotEmpty", "FileInfo", "InvalidRequest",
    "IsADirectory", "Link", "LinkExpired", "NotADirectory", "NotFound", "PermissionDenied",
    "PreconditionFailed", "Transfer", "Unavailable", "__version__",
]

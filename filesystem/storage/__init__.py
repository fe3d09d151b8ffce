"""Storage backends behind one interface; `get_backend(name)` picks one from the settings."""

from __future__ import annotations

from django.conf import settings

from filesystem.storage.base import (
    BackendUnavailable,
    BlobReader,
    ChecksumMismatchError,
    StorageBackend,
    WriteResult,
)
from filesystem.storage.local import LocalStorage

__all__ = [
    "BackendUnavailable",
    "BlobReader",
    "ChecksumMismatchError",
    "StorageBackend",
    "UnknownBackend",
    "WriteResult",
    "available_backends",
    "get_backend",
]

_instances: dict[str, tuple[object, StorageBackend]] = {}


class UnknownBackend(KeyError):
    """The backend name is not known or not configured on this node."""


def available_backends() -> list[str]:
    """Names of the backends this node can use with its current settings."""
    names = ["localfs"]
    if settings.CALLFS.s3_bucket:
        names.append("s3")
    return names


def get_backend(name: str) -> StorageBackend:
    """The backend called `name`, built from the settings in force (cached per settings)."""
    config = settings.CALLFS
    cached = _instances.get(name)
    if cached is not None and cached[0] is config:
        return cached[1]
    if name == "localfs":
        backend: StorageBackend = LocalStorage(config.data_dir)
    elif name == "s3" and config.s3_bucket:
        from filesystem.storage.s3 import S3Backend  # boto3 loads only when S3 is configured

        backend = S3Backend(bucket=config.s3_bucket, endpoint_url=config.s3_endpoint_url,
                            region=config.s3_region, access_key=config.s3_access_key,
                            secret_key=config.s3_secret_key, prefix=config.s3_prefix)
    else:
        raise UnknownBackend(name)
    _instances[name] = (config, backend)
    return backend

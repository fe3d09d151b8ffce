"""The S3 backend (AWS or any S3-compatible server) through django-storages and boto3.

django-storages builds and configures the per-thread boto3 connection (endpoint, region,
credentials, path-style addressing); the byte work uses the client directly, because
`S3Storage.open()` reads a whole object into memory and `S3File.close()` completes a multipart
upload even after a failure. Here writes stream through a multipart upload in bounded memory and
are aborted on any error; reads stream ranged `get_object` bodies in chunks.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable, Iterator
from typing import BinaryIO

from botocore.exceptions import BotoCoreError, ClientError
from storages.backends.s3 import S3Storage

from filesystem.storage.base import (
    BackendUnavailable,
    BlobReader,
    ChecksumMismatchError,
    StorageBackend,
    WriteResult,
)

PART_SIZE = 8 * 1024 * 1024  # bytes held in memory per upload; S3's minimum part is 5 MiB
READ_CHUNK = 256 * 1024
_MISSING = {"404", "NoSuchKey", "NotFound", "NoSuchUpload"}


def _missing(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") in _MISSING


class S3Reader(BlobReader):
    """A streaming `get_object` body, read in chunks (never the whole object at once)."""

    def __init__(self, body):
        super().__init__()
        self._body = body

    def read(self, size: int = -1) -> bytes:
        try:
            return self._body.read(READ_CHUNK if size is None or size < 0 else size)
        except (BotoCoreError, OSError) as exc:
            raise BackendUnavailable(f"S3 read failed: {exc}") from exc

    def close(self) -> None:
        self._body.close()
        super().close()


class S3Backend(StorageBackend):
    """Blobs as objects `<prefix>blobs/<key>` in one bucket."""

    name = "s3"

    def __init__(self, *, bucket: str, endpoint_url: str | None, region: str | None,
                 access_key: str | None, secret_key: str | None, prefix: str = "callfs/"):
        self.bucket = bucket
        self.prefix = prefix
        self._storage = S3Storage(
            bucket_name=bucket, endpoint_url=endpoint_url, region_name=region or "us-east-1",
            access_key=access_key, secret_key=secret_key, addressing_style="path",
            signature_version="s3v4", file_overwrite=True,
        )

    @property
    def client(self):
        return self._storage.connection.meta.client  # one boto3 client per thread

    def _object(self, key: str) -> str:
        return f"{self.prefix}blobs/{key}"

    def _call(self, operation: str, **params):
        try:
            return getattr(self.client, operation)(Bucket=self.bucket, **params)
        except ClientError as exc:
            if _missing(exc):
                raise FileNotFoundError(params.get("Key", self.bucket)) from exc
            raise BackendUnavailable(f"S3 {operation} failed: {exc}") from exc
        except BotoCoreError as exc:
            raise BackendUnavailable(f"S3 {operation} failed: {exc}") from exc

    def open(self, key: str, start: int = 0, length: int | None = None) -> BinaryIO:
        if length == 0:
            return io.BytesIO(b"")
        params = {"Key": self._object(key)}
        if start or length is not None:
            end = "" if length is None else str(start + length - 1)
            params["Range"] = f"bytes={start}-{end}"
        try:
            response = self._call("get_object", **params)
        except BackendUnavailable as exc:
            if "InvalidRange" in str(exc):  # asked past the end of an (empty) object
                return io.BytesIO(b"")
            raise
        return S3Reader(response["Body"])

    def write(self, key: str, chunks: Iterable[bytes], expected_sha256: str | None = None
              ) -> WriteResult:
        digest = hashlib.sha256()
        size = 0
        pending: list[bytes] = []  # at most one part's worth of chunks, joined once per part
        pending_size = 0
        upload_id = None
        parts: list[dict] = []
        object_key = self._object(key)
        try:
            for chunk in chunks:
                digest.update(chunk)
                size += len(chunk)
                pending.append(chunk)
                pending_size += len(chunk)
                if pending_size >= PART_SIZE:
                    if upload_id is None:
                        upload_id = self._call("create_multipart_upload",
                                               Key=object_key)["UploadId"]
                    data = b"".join(pending)
                    pending, pending_size = [], 0
                    self._upload_part(object_key, upload_id, parts, data)
                    del data
            sha256 = digest.hexdigest()
            if expected_sha256 is not None and expected_sha256.lower() != sha256:
                raise ChecksumMismatchError(sha256)
            if upload_id is None:  # small object: one request
                self._call("put_object", Key=object_key, Body=b"".join(pending))
            else:
                if pending:
                    self._upload_part(object_key, upload_id, parts, b"".join(pending))
                self._call("complete_multipart_upload", Key=object_key, UploadId=upload_id,
                           MultipartUpload={"Parts": parts})
        except BaseException:
            if upload_id is not None:
                try:  # never complete a partial upload: abort it, leaving no object
                    self._call("abort_multipart_upload", Key=object_key, UploadId=upload_id)
                except (BackendUnavailable, FileNotFoundError):
                    pass
            raise
        return WriteResult(size=size, sha256=sha256)

    def _upload_part(self, object_key: str, upload_id: str, parts: list[dict],
                     data: bytes) -> None:
        number = len(parts) + 1
        response = self._call("upload_part", Key=object_key, UploadId=upload_id,
                              PartNumber=number, Body=data)
        parts.append({"PartNumber": number, "ETag": response["ETag"]})

    def delete(self, key: str) -> None:
        try:
            self._call("delete_object", Key=self._object(key))
        except FileNotFoundError:
            pass

    def copy(self, source_key: str, target_key: str) -> None:
        # The managed copy uses copy_object, or a multipart copy above its threshold (S3 refuses
        # copy_object beyond 5 GiB): the bytes never leave the S3 server.
        try:
            self.client.copy({"Bucket": self.bucket, "Key": self._object(source_key)},
                             self.bucket, self._object(target_key))
        except ClientError as exc:
            if _missing(exc):
                raise FileNotFoundError(source_key) from exc
            raise BackendUnavailable(f"S3 copy failed: {exc}") from exc
        except BotoCoreError as exc:
            raise BackendUnavailable(f"S3 copy failed: {exc}") from exc

    def size(self, key: str) -> int:
        return self._call("head_object", Key=self._object(key))["ContentLength"]

    def modified_at(self, key: str) -> float:
        return self._call("head_object", Key=self._object(key))["LastModified"].timestamp()

    def keys(self) -> Iterator[str]:
        start = f"{self.prefix}blobs/"
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=start):
                for item in page.get("Contents", []):
                    yield item["Key"][len(start):]
        except (ClientError, BotoCoreError) as exc:
            raise BackendUnavailable(f"S3 list failed: {exc}") from exc

    def check(self) -> None:
        try:
            self._call("head_bucket")
        except FileNotFoundError:
            raise BackendUnavailable(f"bucket {self.bucket!r} does not exist") from None

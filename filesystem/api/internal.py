"""The internal blob API peers use to reach this node's disk: `/v1/internal/blobs/<key>`.

Only requests signed by a node that holds the internal secret are accepted (`cluster.signing`);
API keys and the bare secret itself are refused. The calling node has already resolved the path
and checked the user's permissions against the shared metadata.
"""

from __future__ import annotations

import logging
import re

from django.conf import settings
from django.http import FileResponse, HttpResponse, JsonResponse
from drf_spectacular.utils import extend_schema
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed

from accounts.keys import internal_user
from callfs_site.views import CallFSView
from cluster import signing
from filesystem.api.streaming import iter_body
from filesystem.exceptions import ChecksumMismatch, FileNotFound, InvalidRequest
from filesystem.storage import ChecksumMismatchError, get_backend

logger = logging.getLogger(__name__)

_KEY = re.compile(r"[0-9a-f]{32}")
_RANGE = re.compile(r"bytes=(\d+)-(\d*)")


class SignedPeerAuthentication(BaseAuthentication):
    """A request signed for this node by a peer (`cluster.signing.verify`): fresh, used once.
    Authenticates as `internal-proxy`; `request.auth` is the `SignedRequest`."""

    def authenticate(self, request):
        django_request = getattr(request, "_request", request)
        try:
            signed = signing.verify(django_request.method,
                                    signing.target_of_request(django_request),
                                    django_request.headers)
        except signing.SignatureError as exc:
            logger.warning("refused a peer request %s %r: %s", django_request.method,
                           django_request.path, exc)
            raise AuthenticationFailed() from None
        return internal_user(), signed

    def authenticate_header(self, request) -> str:
        return signing.SCHEME


@extend_schema(exclude=True)  # node-to-node only
class BlobView(CallFSView):
    """GET/HEAD (with a single byte range), PUT (stream or `X-CallFS-Copy-From`), DELETE."""

    authentication_classes = [SignedPeerAuthentication]
    http_method_names = ["get", "head", "put", "delete"]

    @staticmethod
    def _key(key: str) -> str:
        if not _KEY.fullmatch(key):
            raise InvalidRequest("not a blob key")
        return key

    def _open(self, request, key: str):
        backend = get_backend("localfs")
        key = self._key(key)
        try:
            size = backend.size(key)
        except FileNotFoundError:
            raise FileNotFound("no such blob") from None
        match = _RANGE.fullmatch(request.headers.get("Range", ""))
        start, length = 0, size
        if match:
            start = min(int(match.group(1)), size)
            end = int(match.group(2)) if match.group(2) else size - 1
            length = max(min(end, size - 1) - start + 1, 0)
        return backend, key, size, start, length, bool(match)

    def get(self, request, key: str):
        backend, key, size, start, length, partial = self._open(request, key)
        try:
            reader = backend.open(key, start, length)
        except FileNotFoundError:  # deleted since _open() sized it: an overwrite's old blob
            raise FileNotFound("no such blob") from None
        response = FileResponse(reader, content_type="application/octet-stream",
                                status=206 if partial else 200)
        response.block_size = 256 * 1024
        response["Content-Length"] = str(length)
        return response

    def head(self, request, key: str):
        _, _, size, _, _, _ = self._open(request, key)
        response = HttpResponse(content_type="application/octet-stream")
        response["Content-Length"] = str(size)
        return response

    def put(self, request, key: str):
        backend = get_backend("localfs")
        key = self._key(key)
        source = request.headers.get("X-CallFS-Copy-From")
        if source is not None:
            try:
                backend.copy(self._key(source), key)
            except FileNotFoundError:
                raise FileNotFound("no such blob") from None
            return JsonResponse({"size": backend.size(key)}, status=201)
        signed = request.auth
        if signed.content_sha256 == signing.STREAMING:
            cap = settings.CALLFS.max_upload_bytes + signing.TRAILER_BYTES
            body = signing.TrailedBody(iter_body(request, cap), signed)
            result = backend.write(key, body)
            if not body.matches(result.sha256):
                # Bytes altered on the way (or cut short): removed again; the sender gets a 401
                # and never commits metadata that points at them.
                backend.delete(key)
                logger.warning("refused a peer write to blob %s: the body's trailer does not "
                               "match its bytes", key)
                raise AuthenticationFailed()
        else:
            try:  # the signed digest: other bytes are refused and nothing is stored
                result = backend.write(key, iter_body(request), signed.content_sha256)
            except ChecksumMismatchError:
                raise ChecksumMismatch() from None
        return JsonResponse({"size": result.size, "sha256": result.sha256}, status=201)

    def delete(self, request, key: str):
        get_backend("localfs").delete(self._key(key))
        return HttpResponse(status=204)


@extend_schema(exclude=True)
class UnknownInternalView(CallFSView):
    """Any other /v1/internal/ URL (upstream's shard and Raft endpoints, which this server does
    not have): only a signed peer request gets as far as the 404; API keys and the bare secret
    are 401 (T 32 asks for 401 without the secret and 401/403 for an API key)."""

    authentication_classes = [SignedPeerAuthentication]

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        raise FileNotFound("no such internal endpoint")

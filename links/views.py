"""The public GET /download/<token> (API.md §7.12): no authentication, rate-limited per IP."""

from __future__ import annotations

from django.http import FileResponse
from django.utils.http import content_disposition_header
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.permissions import AllowAny

from callfs_site.schema import errors
from callfs_site.views import CallFSView
from filesystem.api.streaming import DOWNLOAD_BLOCK_SIZE
from links import services
from links.exceptions import InvalidRequest
from links.throttling import LinkDownloadThrottle


@extend_schema(summary="Redeem a single-use link: the file's bytes, once, without a key",
               auth=[], responses={(200, "application/octet-stream"): OpenApiTypes.BINARY,
                                   **errors(400, 403, 404, 410, 429)})
class DownloadView(CallFSView):
    """Redeem a single-use link and stream its file. An APIView, so every error is the JSON
    shape. GET only: a HEAD (link previewers send them) must not consume the link."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes = [LinkDownloadThrottle]
    http_method_names = ["get"]

    def get(self, request, token: str = ""):
        if not token:
            raise InvalidRequest("the download token is missing")
        download = services.redeem(token)
        response = FileResponse(download.reader, content_type="application/octet-stream")
        response.block_size = DOWNLOAD_BLOCK_SIZE
        response["Content-Length"] = str(download.inode.size)
        response["Content-Disposition"] = content_disposition_header(
            as_attachment=True, filename=download.filename)
        return response

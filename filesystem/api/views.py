"""The path endpoints of /v1: files (bytes, listings, create, overwrite, move, delete) and
directory listings. Views parse input, call one service and shape the HTTP answer."""

from __future__ import annotations

import re
from urllib.parse import unquote

from django.http import FileResponse, HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework.response import Response

from callfs_site.errors import NotFound, first_message
from callfs_site.headers import set_headers
from callfs_site.schema import errors
from callfs_site.views import CallFSView
from filesystem import paths, services
from filesystem.api import conditional, listing
from filesystem.api.serializers import (
    DirectoryListingSerializer,
    FileInfoSerializer,
    ListingParams,
    MetadataRequest,
    MoveRequest,
)
from filesystem.api.streaming import (
    DOWNLOAD_BLOCK_SIZE,
    announced_length,
    has_body,
    iter_body,
    read_json,
)
from filesystem.exceptions import BadRequest, InvalidRequest, PreconditionFailed
from filesystem.models import Inode

BINARY = {"application/octet-stream": OpenApiTypes.BINARY}
PATH = OpenApiParameter("path", OpenApiTypes.STR, OpenApiParameter.PATH,
                        description="the file or directory path; a trailing slash names a "
                                    "directory (POST creates one)")


def _header(name: str, description: str) -> OpenApiParameter:
    return OpenApiParameter(name, OpenApiTypes.STR, OpenApiParameter.HEADER, required=False,
                            description=description)


UPLOAD_HEADERS = [
    _header("X-CallFS-SHA256", "expected sha256 of the body: other bytes are refused (400 "
                               "CHECKSUM_MISMATCH) and nothing is stored"),
    _header("X-CallFS-Copy-Source", "copy this existing file server-side (empty body)"),
]
PATCH_BODY_LIMIT = 1024 * 1024
# Up to this size a download is answered from one read(): sendfile()'s setup in gunicorn costs
# more than copying a few pages. Larger bodies stream (sendfile() from local disk).
SMALL_DOWNLOAD = 64 * 1024
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


def metadata_headers(response: HttpResponse, inode: Inode, user, *,
                     instance: bool = False) -> None:
    """The X-CallFS-* headers of API.md §5.1, plus validators for files (§16.3): the content
    digest (ETag, X-CallFS-SHA256) only for a caller who may read the file (§16.5)."""
    headers = {
        "X-CallFS-Type": inode.type, "X-CallFS-Size": str(inode.size),
        "X-CallFS-Mode": inode.mode_string, "X-CallFS-Owner": inode.owner_name,
        "X-CallFS-Group": inode.group_name, "X-CallFS-MTime": services.format_time(inode.mtime),
    }
    if instance and inode.node_id and not inode.is_root:
        headers["X-CallFS-Instance-ID"] = inode.node_id
    if not inode.is_dir:
        headers["Accept-Ranges"] = "bytes"
        headers["Last-Modified"] = conditional.last_modified(inode)
        tag = conditional.etag(inode, user)
        if tag is not None:
            headers["ETag"] = tag
            headers["X-CallFS-SHA256"] = inode.sha256
    set_headers(response, headers)


def _expected_sha256(request) -> str | None:
    value = request.META.get("HTTP_X_CALLFS_SHA256")
    if value is None:
        return None
    if not _SHA256.fullmatch(value.strip()):
        raise InvalidRequest("X-CallFS-SHA256 must be 64 hexadecimal characters")
    return value.strip().lower()


def _copy_source(request) -> str | None:
    """The canonical path named by X-CallFS-Copy-Source (§16.3); such a request has no body."""
    source = request.META.get("HTTP_X_CALLFS_COPY_SOURCE")
    if source is None:
        return None
    if has_body(request):
        raise InvalidRequest("a copy request (X-CallFS-Copy-Source) must have an empty body")
    return paths.parse(unquote(source)).path


def _precondition(request):
    """The write preconditions (If-Match, If-None-Match, If-Unmodified-Since) of a request."""
    return conditional.write_precondition(conditional.validators(request), request.user)


def _not_modified_or_failed(headers, inode: Inode, user) -> HttpResponse | None:
    status = conditional.read_status(headers, inode, user)
    if status == 412:
        raise PreconditionFailed()
    if status == 304:
        response = HttpResponse(status=304)
        metadata_headers(response, inode, user)
        return response
    return None


@extend_schema_view(
    get=extend_schema(
        summary="Download a file, or list a directory's children",
        parameters=[PATH, _header("Range", "bytes=a-b, a- or -n: 206 with Content-Range"),
                    _header("If-None-Match", "304 when the ETag matches"),
                    _header("If-Modified-Since", "304 when not modified since"),
                    _header("If-Range", "apply Range only while this ETag/date is current")],
        responses={(200, "application/octet-stream"): OpenApiTypes.BINARY,
                   (200, "application/json"): FileInfoSerializer(many=True),
                   (206, "application/octet-stream"): OpenApiTypes.BINARY,
                   304: OpenApiResponse(description="not modified"),
                   **errors(400, 401, 403, 404, 412, 416, 502, 503)}),
    head=extend_schema(
        summary="Metadata headers: X-CallFS-Type/-Size/-Mode/-Owner/-Group/-MTime/-Instance-ID"
                ", Last-Modified; X-CallFS-SHA256 and ETag only for callers who may read the "
                "file", parameters=[PATH],
        responses={200: OpenApiResponse(description="headers only"), 304: None,
                   **errors(400, 401, 403, 404)}),
    post=extend_schema(
        summary="Create a file (raw body), or a directory (path ending in /, mkdir -p)",
        parameters=[PATH, *UPLOAD_HEADERS], request=BINARY,
        responses={201: OpenApiResponse(description="created"),
                   200: OpenApiResponse(description="the directory already existed"),
                   **errors(400, 401, 403, 409, 411, 413, 503)}),
    put=extend_schema(
        summary="Create (201) or overwrite (200) a file with the raw body",
        parameters=[PATH, *UPLOAD_HEADERS,
                    _header("If-Match", "overwrite only while the ETag matches (else 412)"),
                    _header("If-None-Match", "'*': create only (412 if the file exists)")],
        request=BINARY,
        responses={201: OpenApiResponse(description="created"),
                   200: OpenApiResponse(description="overwritten"),
                   **errors(400, 401, 403, 404, 411, 412, 413, 502, 503)}),
    patch=extend_schema(
        summary="Rename/move ({name} or {destination, overwrite, create_parents, backend, "
                "instance}), or change {mode, group, owner}",
        parameters=[PATH, _header("If-Match", "412 unless the ETag matches")],
        request=MoveRequest,
        responses={200: OpenApiResponse(description='{"path": new path}, or the new FileInfo '
                                                    "for a metadata change"),
                   **errors(400, 401, 403, 404, 409, 412, 502, 503)}),
    delete=extend_schema(
        summary="Delete a file or an empty directory (?recursive=true: a whole subtree)",
        parameters=[PATH, OpenApiParameter("recursive", OpenApiTypes.BOOL, required=False),
                    _header("If-Match", "412 unless the ETag matches")],
        responses={204: None, **errors(400, 401, 403, 404, 409, 412, 502, 503)}),
)
class FileView(CallFSView):
    """/v1/files/{path}: GET, HEAD, POST, PUT, PATCH, DELETE (API.md §7.3-§7.8)."""

    http_method_names = ["get", "head", "post", "put", "patch", "delete"]
    lean_methods = frozenset({"GET", "HEAD", "PUT", "POST"})  # the byte movers (CallFSView)

    def get(self, request, path: str = ""):
        target = paths.parse(path).path
        # `r` first: no conditional or Range may tell anything about bytes one may not read.
        # An overwrite that lands between the lookup and the open is served whole: its inode
        # is looked up again and every header and range weighed against it.
        return services.on_current_version(
            lambda: services.stat(request.user, target, read=True),
            lambda inode: self._answer(request, inode))

    @staticmethod
    def _answer(request, inode: Inode):
        """The GET answer for one version of the entry: headers and bytes from `inode` alone."""
        if inode.is_dir:  # short listings whole, long ones streamed (filesystem.api.listing)
            response = listing.children_response(services.list_children(request.user, inode))
            metadata_headers(response, inode, request.user)
            return response
        validators = conditional.validators(request)
        early = _not_modified_or_failed(validators, inode, request.user)
        if early is not None:
            return early
        requested = conditional.byte_range(validators, inode, request.user)
        start, length = requested or (0, inode.size)
        status = 206 if requested else 200
        if length <= SMALL_DOWNLOAD:
            response = HttpResponse(services.read_file(request.user, inode, start, length),
                                    status=status, content_type="application/octet-stream")
        else:
            response = FileResponse(services.open_file(request.user, inode, start, length),
                                    content_type="application/octet-stream", status=status)
            response.block_size = DOWNLOAD_BLOCK_SIZE
        extent = {"Content-Range": f"bytes {start}-{start + length - 1}/{inode.size}"
                  } if requested else {}
        set_headers(response, {"Content-Length": str(length), **extent})
        metadata_headers(response, inode, request.user, instance=True)
        return response

    def head(self, request, path: str = ""):
        inode = services.stat(request.user, paths.parse(path).path)
        early = None if inode.is_dir else _not_modified_or_failed(
            conditional.validators(request), inode, request.user)
        if early is not None:
            return early
        content_type = "application/json" if inode.is_dir else "application/octet-stream"
        response = HttpResponse(content_type=content_type)
        metadata_headers(response, inode, request.user, instance=True)
        if not inode.is_dir:
            set_headers(response, {"Content-Length": str(inode.size)})
        return response

    def post(self, request, path: str = ""):
        target = paths.parse(path)
        if target.trailing_slash:
            _, created = services.make_directory(request.user, target.path)
            return HttpResponse(status=201 if created else 200)
        copy_source = _copy_source(request)
        if copy_source is not None:
            services.copy_file(request.user, copy_source, target.path, replace=False)
        else:
            services.create_file(request.user, target.path, iter_body(request),
                                 expected_sha256=_expected_sha256(request),
                                 length=announced_length(request))
        return HttpResponse(status=201)

    def put(self, request, path: str = ""):
        target = paths.parse(path)
        if target.trailing_slash:
            raise InvalidRequest("PUT needs a file path; a trailing slash names a directory")
        precondition = _precondition(request)
        copy_source = _copy_source(request)
        if copy_source is not None:
            _, created = services.copy_file(request.user, copy_source, target.path,
                                            replace=True, precondition=precondition)
        else:
            _, created = services.write_file(
                request.user, target.path, iter_body(request),
                expected_sha256=_expected_sha256(request), precondition=precondition,
                length=announced_length(request))
        return HttpResponse(status=201 if created else 200)

    def patch(self, request, path: str = ""):
        source = paths.parse(path).path
        body = read_json(request, PATCH_BODY_LIMIT)
        if not isinstance(body, dict):
            raise BadRequest("invalid JSON body")
        precondition = _precondition(request)
        if any(key in body for key in MetadataRequest.FIELDS):
            return self._change_metadata(request, source, body, precondition)
        move = MoveRequest(data=body)
        if not move.is_valid():
            raise BadRequest(first_message(move.errors))
        options = move.validated_data
        destination = options.get("destination") or paths.join(
            paths.parent_of(source), options["name"])
        inode = services.move(
            request.user, source, destination,
            overwrite=options["overwrite"] or request.query_params.get("overwrite") == "true",
            create_parents=options["create_parents"],
            backend=options.get("backend"),
            instance=options.get("instance"),
            precondition=precondition,
        )
        return Response({"path": inode.path})

    @staticmethod
    def _change_metadata(request, path: str, body: dict, precondition):
        if body.get("name") or body.get("destination"):
            raise InvalidRequest("mode/group/owner cannot be combined with name/destination")
        change = MetadataRequest(data=body)
        if not change.is_valid():
            raise InvalidRequest(first_message(change.errors))
        inode = services.change_metadata(request.user, path, precondition=precondition,
                                         **change.validated_data)
        return Response(services.file_info(inode))

    def delete(self, request, path: str = ""):
        services.delete(
            request.user, paths.parse(path).path,
            recursive=request.query_params.get("recursive") in ("true", "1"),
            precondition=_precondition(request),
        )
        return HttpResponse(status=204)


@extend_schema_view(get=extend_schema(
    summary="List a directory (recursive=true; max_depth: 0 = its children only, default 100; "
            "pages with limit and cursor)",
    description=(
        "The listing object of API.md §7.10. `recursive=true` lists the directory's children, "
        "then each subdirectory's subtree in child order, down to `max_depth` + 1 levels "
        "(`max_depth=0`: the children only; default 100, at most 1000), entering only "
        "directories the caller may read and traverse. Children come files first, then "
        "directories, each by name.\n\n"
        "Without `limit` the answer is complete. Up to 1,000 entries it comes whole, with "
        "`X-CallFS-Count` and `Content-Length`; a longer one is streamed as it is read (chunked, "
        "constant memory on the server): `count` then follows `items` in the object and "
        "`X-CallFS-Count` is absent.\n\n"
        "With `limit` (1-10,000) the answer is one page, whole, in the same order; when more "
        "entries follow, `next_cursor` is set: pass it as `cursor`, with the same path, "
        "`recursive` and `max_depth`, for the next page. Cursors are opaque and signed; a page "
        "starts just after the previous page's last entry even if that entry was deleted "
        "since, and every page checks permissions anew. Entries created, deleted or moved "
        "while a listing is read may or may not appear in it, as with readdir(3)."),
    parameters=[PATH, ListingParams], responses={200: DirectoryListingSerializer,
                                                 **errors(400, 401, 403, 404)}))
class DirectoryView(CallFSView):
    """/v1/directories/{path}: the listing object of API.md §7.10, complete (streamed when long)
    or a page of it (§16.5)."""

    http_method_names = ["get"]

    def dispatch(self, request, *args, **kwargs):
        response = super().dispatch(request, *args, **kwargs)
        # The view and DRF's request refer to each other (its parser_context): a cycle, left
        # to the cyclic collector, which must not keep the answer too (a page is up to ~2 MB;
        # a stream holds its walk).
        self.response = None
        return response

    def get(self, request, path: str = ""):
        params = ListingParams(data=request.query_params)
        params.is_valid(raise_exception=True)
        options = params.validated_data
        found = services.list_directory(request.user, paths.parse(path).path,
                                        recursive=options["recursive"],
                                        max_depth=options["max_depth"])
        return listing.directory_response(found, limit=options["limit"],
                                          cursor=options["cursor"])


@extend_schema(exclude=True)
class UnknownApiView(CallFSView):
    """Any other /v1 URL: authentication first (401), then 404, as upstream."""

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        raise NotFound()

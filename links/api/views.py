"""/v1/links: generate a link (§7.11) and list, show and revoke link records (§16.4)."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.http import HttpResponse
from drf_spectacular.utils import extend_schema, extend_schema_view, inline_serializer
from rest_framework import mixins, serializers, viewsets
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response

from callfs_site.schema import errors
from callfs_site.views import CallFSView
from filesystem.api.streaming import read_json
from links import services
from links.api.serializers import DownloadLinkSerializer, GenerateLinkRequest
from links.exceptions import InvalidRequest
from links.throttling import LinkGenerateThrottle

REQUEST_BODY_LIMIT = 4096


def download_base(request) -> str:
    """Where generated links point: CALLFS_EXTERNAL_URL (any path in it kept); else this
    request's scheme and host when DJANGO_ALLOWED_HOSTS lists the hosts (Django checks the Host
    header against them); else, with `*`, CALLFS_NODE_URL. A Host header nobody checked never
    reaches a link: it would make a genuine token point at the sender's server."""
    config = settings.CALLFS
    if config.external_url:
        return config.external_url
    if "*" in settings.ALLOWED_HOSTS:
        return config.node_url
    try:
        return f"{request.scheme}://{request.get_host()}"
    except DisallowedHost:
        raise InvalidRequest("the Host header is not one of DJANGO_ALLOWED_HOSTS") from None


def download_url(base: str, token: str) -> str:
    """`base` (from download_base) plus /download/<token>."""
    return f"{base.rstrip('/')}/download/{token}"


LINK = inline_serializer("GeneratedLink", {
    "url": serializers.CharField(), "token": serializers.CharField(),
    "expires": serializers.CharField(), "expires_at": serializers.CharField()})


@extend_schema(summary="Make a single-use, time-limited download link (shown once)",
               request=GenerateLinkRequest, responses={201: LINK, **errors(400, 401, 403, 404,
                                                                            429)})
class GenerateLinkView(CallFSView):
    """POST /v1/links/generate: authenticated, then rate-limited per IP (100/s, burst 1)."""

    http_method_names = ["post"]
    throttle_classes = [LinkGenerateThrottle]

    def post(self, request):
        params = GenerateLinkRequest(data=read_json(request, REQUEST_BODY_LIMIT,
                                                    error=InvalidRequest))
        params.is_valid(raise_exception=True)
        base = download_base(request)  # before the link exists: a refused Host makes none
        issued = services.issue(request.user, **params.validated_data)
        expires = services.format_expiry(issued.link.expires_at)
        return Response({"url": download_url(base, issued.token), "token": issued.token,
                         "expires": expires, "expires_at": expires}, status=201)


class LinkPagination(LimitOffsetPagination):
    default_limit = 100
    max_limit = 1000


@extend_schema_view(
    list=extend_schema(summary="Your download links (a superuser's: all)"),
    retrieve=extend_schema(summary="One link record", responses={200: DownloadLinkSerializer,
                                                                 **errors(401, 404)}),
    destroy=extend_schema(summary="Revoke a link (later downloads answer 410)",
                          responses={204: None, **errors(401, 404)}),
)
class LinkViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet,
                  CallFSView):
    """GET /v1/links/, GET and DELETE /v1/links/{id}: the caller's links (an admin's: all).
    DELETE revokes (204) and keeps the record; it never shows a token or digest."""

    serializer_class = DownloadLinkSerializer
    pagination_class = LinkPagination
    lookup_field = "public_id"
    lookup_url_kwarg = "id"
    lookup_value_regex = r"[A-Za-z0-9_-]+"

    def get_queryset(self):
        return services.links_for(self.request.user)

    def get_object(self):
        return services.get_link(self.request.user, self.kwargs["id"])

    def destroy(self, request, id=None):  # noqa: A002 - the router's name for the lookup
        services.revoke(request.user, id)
        return HttpResponse(status=204)

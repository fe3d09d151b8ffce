"""Site-level endpoints: /health, /metrics, and JSON answers for unknown URLs and crashes;
CallFSView, the base of every API view."""

import logging

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpResponse
from django.template.response import SimpleTemplateResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_view, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import NotAuthenticated
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.views import APIView

from callfs_site import fastpaths
from callfs_site.errors import CallFSError, NotFound, error_response
from callfs_site.metrics import exposition
from callfs_site.schema import ERROR

logger = logging.getLogger(__name__)

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


class CallFSView(APIView):
    """Base of our API views: no DRF default headers (Allow, Vary) on every answer; the error
    handler adds Allow to a 405, where it belongs.

    Methods in `lean_methods` skip DRF's request wrapper, content negotiation and permission
    objects, a noticeable part of a small download's time (a fast path, callfs_site.fastpaths;
    measured: BENCHMARKS.md): they authenticate with the same classes (and, like
    IsAuthenticated, refuse anonymous requests) and fail through the same exception handler.
    Their handlers get Django's request, so they use only what both kinds have (`headers`,
    `user`, `META`, the body stream), never `query_params` or `data`. A view with lean methods
    may not set other permissions or any throttles: the lean path would skip them, so
    `as_view()` refuses such a view."""

    lean_methods: frozenset[str] = frozenset()

    @classmethod
    def as_view(cls, **initkwargs):
        if cls.lean_methods and (cls.throttle_classes
                                 or list(cls.permission_classes) != [IsAuthenticated]):
            raise ImproperlyConfigured(
                f"{cls.__name__}: lean_methods skip DRF's permission and throttle checks, so "
                "the view may have only IsAuthenticated and no throttles (or no lean_methods)")
        return super().as_view(**initkwargs)

    @property
    def default_response_headers(self) -> dict[str, str]:
        return {}

    def dispatch(self, request, *args, **kwargs):
        if request.method not in self.lean_methods or not fastpaths.enabled():
            response = super().dispatch(request, *args, **kwargs)
            if not isinstance(response, SimpleTemplateResponse):
                # The view and DRF's request refer to each other: without this the answer,
                # a listing say, would wait for the cyclic collector with them.
                self.response = None
            return response
        self.args, self.kwargs, self.request = args, kwargs, request
        self.headers = self.default_response_headers
        self.format_kwarg = None
        try:
            request.user = self._authenticated_user(request)
            response = getattr(self, request.method.lower())(request, *args, **kwargs)
        except Exception as exc:
            response = self.handle_exception(exc)
        self.response = self.finalize_response(request, response, *args, **kwargs)
        return self.response

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        if isinstance(response, SimpleTemplateResponse):  # a DRF Response, rendered later
            response.add_post_render_callback(_release_render_context)
        return response

    def _authenticated_user(self, request):
        for authenticator in self.get_authenticators():
            found = authenticator.authenticate(request)
            if found is not None:
                return found[0]
        raise NotAuthenticated()


def _release_render_context(response) -> None:
    """Once a DRF Response is rendered, drop what rendering needed. Its renderer_context holds
    the view, the request and the response itself, and the view holds the response: a cycle,
    so the data and the rendered body waited for Python's cyclic collector, which rarely runs
    on long-lived objects. Every large listing left its entries and body behind, and a worker
    grew with each one (measured: BENCHMARKS.md, seventh session)."""
    view = (response.renderer_context or {}).get("view")
    if view is not None and getattr(view, "response", None) is response:
        view.response = None
    response.renderer_context = None


@extend_schema(summary="Liveness: always {\"status\":\"ok\"}", auth=[],
               responses={200: inline_serializer("Health", {"status": serializers.CharField()})})
class HealthView(CallFSView):
    """Liveness: cheap, no auth, no database (API.md §7.1)."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    http_method_names = ["get"]

    def get(self, request):
        return HttpResponse(b'{"status":"ok"}', content_type="application/json")


@extend_schema_view(
    get=extend_schema(summary="Prometheus metrics (text exposition 0.0.4)",
                      responses={(200, "text/plain"): OpenApiTypes.STR, 401: ERROR}),
    post=extend_schema(exclude=True))  # every method answers, as upstream; GET is documented
class MetricsView(CallFSView):
    """Prometheus exposition; needs a key unless CALLFS_METRICS_PUBLIC=1 (API.md §7.2) or the
    request came through the metrics listener (CALLFS_METRICS_BIND, callfs_site.middleware)."""

    http_method_names = ["get", "post", "put", "patch", "delete", "head", "options"]

    def _public(self) -> bool:
        # self.request is Django's request here (View.setup), DRF's one later: both carry it.
        return (settings.CALLFS.metrics_public
                or getattr(self.request, "metrics_listener", False))

    def get_permissions(self):
        return [AllowAny() if self._public() else IsAuthenticated()]

    def get_authenticators(self):
        return [] if self._public() else super().get_authenticators()

    def get(self, request):
        return HttpResponse(exposition(), content_type=PROMETHEUS_TEXT)

    def post(self, request):
        return self.get(request)

    put = patch = delete = options = post


def not_found(request, exception=None):
    return error_response(NotFound.default_code, NotFound.default_detail, status=404)


def server_error(request):
    return error_response(CallFSError.default_code, CallFSError.default_detail, status=500)

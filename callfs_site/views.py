"""Site-level endpoints: /health, /metrics, and JSON answers for unknown URLs and crashes."""

from django.conf import settings
from django.http import HttpResponse
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.views import APIView

from callfs_site.errors import CallFSError, NotFound, error_response
from callfs_site.metrics import exposition

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


class CallFSView(APIView):
    """Base of our API views: no DRF default headers (Allow, Vary) on every answer; the error
    handler adds Allow to a 405, where it belongs."""

    @property
    def default_response_headers(self) -> dict[str, str]:
        return {}


class HealthView(CallFSView):
    """Liveness: cheap, no auth, no database (API.md §7.1)."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    http_method_names = ["get"]

    def get(self, request):
        return HttpResponse(b'{"status":"ok"}', content_type="application/json")


class MetricsView(CallFSView):
    """Prometheus exposition; needs a key unless CALLFS_METRICS_PUBLIC=1 (API.md §7.2)."""

    http_method_names = ["get", "post", "put", "patch", "delete", "head", "options"]

    def get_permissions(self):
        public = settings.CALLFS.metrics_public
        return [AllowAny() if public else IsAuthenticated()]

    def get_authenticators(self):
        return [] if settings.CALLFS.metrics_public else super().get_authenticators()

    def get(self, request):
        return HttpResponse(exposition(), content_type=PROMETHEUS_TEXT)

    post = put = patch = delete = head = options = get


def not_found(request, exception=None):
    return error_response(NotFound.default_code, NotFound.default_detail, status=404)


def server_error(request):
    return error_response(CallFSError.default_code, CallFSError.default_detail, status=500)

"""GET /ready: this node serves files once its database, its lock service (Redis, if
configured) and every configured storage backend answer."""

import logging

from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny

from callfs_site.errors import ServiceUnavailable
from callfs_site.schema import ERROR
from callfs_site.views import CallFSView
from filesystem.storage import available_backends, get_backend

logger = logging.getLogger(__name__)

COMPACT = {"separators": (",", ":")}  # compact JSON, as every other answer


@extend_schema(summary="Readiness: database, Redis and storage backends", auth=[],
               responses={200: inline_serializer("Ready", {"status": serializers.CharField(),
                                                           "checks": serializers.DictField()}),
                          503: ERROR})
class ReadyView(CallFSView):
    """Readiness (API.md §16.4): the database, Redis (if configured) and every configured
    storage backend answer; otherwise 503 naming the first failing component. Anyone may ask,
    so the answer names components only; why one failed (paths, hosts) goes to the log."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    http_method_names = ["get"]

    def get(self, request):
        checks: dict[str, str] = {}
        for name, check in _readiness_checks():
            try:
                check()
                checks[name] = "ok"
            except Exception as exc:  # any failure means not ready
                checks[name] = "unavailable"
                logger.warning("not ready: %s failed: %s: %s", name, exc.__class__.__name__,
                               (str(exc).splitlines() or [""])[0][:500])
        failing = [name for name, state in checks.items() if state != "ok"]
        if failing:
            raise ServiceUnavailable(f"{failing[0]} unavailable", extra={"checks": checks})
        return JsonResponse({"status": "ready", "checks": checks}, json_dumps_params=COMPACT)


def _readiness_checks():
    def database() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")

    yield "database", database
    if settings.CALLFS.redis_url:
        from django_redis import get_redis_connection

        yield "redis", lambda: get_redis_connection("locks").ping()
    for name in available_backends():
        yield f"backend:{name}", get_backend(name).check

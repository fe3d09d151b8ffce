"""Per-request context: request id, security headers (API.md §2.3-§2.4), metrics, access log,
the metrics listener's limits (CALLFS_METRICS_BIND); and the admin's own middleware, kept off
the API's path."""

from __future__ import annotations

import functools
import logging
import secrets
import time

from django.conf import settings
from django.contrib.auth import middleware as auth_middleware
from django.contrib.messages import middleware as messages_middleware
from django.contrib.sessions import middleware as sessions_middleware
from django.middleware import csrf
from django.urls import get_script_prefix, reverse

from callfs_site.db import LONG_TRANSFER_BYTES, release_connections
from callfs_site.errors import NotFound, error_response
from callfs_site.headers import set_headers
from callfs_site.logs import request_id
from callfs_site.metrics import (
    BYTES_IN,
    BYTES_OUT,
    HTTP_DURATION,
    HTTP_REQUESTS,
    method_label,
    route_label,
    series,
)

logger = logging.getLogger("callfs.request")

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; object-src 'none'; base-uri 'self'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "strict-origin-when-cross-origin",
    "Permissions-Policy": "geolocation=(), microphone=(), camera=(), payment=(), usb=(), "
    "magnetometer=(), gyroscope=(), accelerometer=()",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
}
HSTS = "max-age=31536000; includeSubDomains; preload"
# All the metrics listener (CALLFS_METRICS_BIND) serves; anything else there is a 404.
METRICS_LISTENER_PATHS = frozenset({"/metrics", "/metrics/", "/health"})


def on_metrics_listener(request) -> bool:
    """Whether the request's connection came in on the metrics listener's port. gunicorn sets
    SERVER_PORT from the listening socket, but behind a unix socket from the Host header, so
    the connection's own local address (gunicorn.socket) decides; nothing else has one."""
    port = settings.CALLFS.metrics_port
    if port is None or request.META.get("SERVER_PORT") != str(port):
        return False
    connection = request.META.get("gunicorn.socket")
    try:
        local = connection.getsockname() if connection is not None else None
    except OSError:
        return False
    return isinstance(local, tuple) and len(local) >= 2 and local[1] == port


class RequestContextMiddleware:
    """Stamps every response, errors included; an incoming X-Request-ID is ignored (§2.3)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        request.request_id = secrets.token_hex(8)
        token = request_id.set(request.request_id)
        try:
            if not on_metrics_listener(request):
                response = self.get_response(request)
            elif request.path_info in METRICS_LISTENER_PATHS:
                request.metrics_listener = True  # MetricsView asks for no key then
                response = self.get_response(request)
            else:
                response = error_response(NotFound.default_code, NotFound.default_detail,
                                          status=404)
        finally:
            request_id.reset(token)
        if request.method == "HEAD" and not response.streaming and response.content:
            response.content = b""  # errors too: a HEAD answer carries no body
        stamps = {"X-Request-ID": request.request_id}
        if (not response.streaming and request.method != "HEAD"
                and response.status_code not in (204, 304)
                and not response.has_header("Content-Length")):
            stamps["Content-Length"] = str(len(response.content))  # no chunking for small bodies
        stamps.update(SECURITY_HEADERS)
        if request.is_secure():
            stamps["Strict-Transport-Security"] = HSTS
        set_headers(response, stamps)
        elapsed = time.perf_counter() - started
        route, method = route_label(request), method_label(request.method)
        series(HTTP_REQUESTS, method, route, str(response.status_code)).inc()
        series(HTTP_DURATION, method, route).observe(elapsed)
        bytes_in = _length(request.META.get("CONTENT_LENGTH"))
        bytes_out = _length(response.get("Content-Length")) if request.method != "HEAD" else 0
        # Before the body moves (callfs_site.db).
        release_connections(long_transfer=response.streaming and bytes_out >= LONG_TRANSFER_BYTES)
        if bytes_in:
            BYTES_IN.inc(bytes_in)
        if bytes_out:
            BYTES_OUT.inc(bytes_out)
        if logger.isEnabledFor(logging.INFO):
            user = getattr(request, "user", None)
            # A download URL is a bearer credential: log the route, never the token.
            path = route if route == "/download/{token}" else request.path
            logger.info(
                "%s %s %s %.1fms",
                request.method, path, response.status_code, elapsed * 1000,
                extra={"request_id": request.request_id, "method": request.method,
                       "route": route, "status": response.status_code,
                       "duration_ms": round(elapsed * 1000, 2), "bytes_in": bytes_in,
                       "bytes_out": bytes_out,
                       "user": user.get_username() if user is not None else ""},
            )
        return response


def _length(value: str | None) -> int:
    try:
        return int(value) if value else 0
    except ValueError:
        return 0


@functools.cache
def _admin_prefix() -> str:
    """Where the admin is mounted, as `path_info` sees it (without a SCRIPT_NAME prefix)."""
    return "/" + reverse("admin:index")[len(get_script_prefix()):]


def _for_admin(request) -> bool:
    return request.path_info.startswith(_admin_prefix())


class _AdminOnly:
    """Sessions, CSRF cookies, logged-in users and flash messages exist for the admin's pages;
    API clients send a Bearer key and use none of them. Skipping these four for every other
    path made a small GET measurably cheaper (BENCHMARKS.md). They stay subclasses of Django's
    classes, which the admin's system checks look for."""

    def __call__(self, request):
        if not _for_admin(request):
            return self.get_response(request)
        return super().__call__(request)


class SessionMiddleware(_AdminOnly, sessions_middleware.SessionMiddleware):
    pass


class CsrfViewMiddleware(_AdminOnly, csrf.CsrfViewMiddleware):
    def process_view(self, request, callback, callback_args, callback_kwargs):
        if not _for_admin(request):
            return None  # the API's views are csrf_exempt: a Bearer key is not ambient
        return super().process_view(request, callback, callback_args, callback_kwargs)


class AuthenticationMiddleware(_AdminOnly, auth_middleware.AuthenticationMiddleware):
    pass


class MessageMiddleware(_AdminOnly, messages_middleware.MessageMiddleware):
    pass

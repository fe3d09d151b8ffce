"""CallFS's own Prometheus metrics, with upstream's names and labels (API.md §12).

Under gunicorn, `gunicorn.conf.py` sets PROMETHEUS_MULTIPROC_DIR before the workers start, so
every worker writes its samples there and /metrics adds them up.
"""

from __future__ import annotations

import functools
import os

from prometheus_client import REGISTRY as DEFAULT_REGISTRY
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

HTTP_REQUESTS = Counter(
    "callfs_http_requests", "HTTP requests by method, route pattern and status",
    ["method", "path", "status_code"])
HTTP_DURATION = Histogram(
    "callfs_http_request_duration_seconds", "Time to produce the response headers",
    ["method", "path"])
FILE_OPERATIONS = Counter(
    "callfs_file_operations", "Filesystem operations by kind and backend",
    ["operation", "backend_type"])
BACKEND_OP_DURATION = Histogram(
    "callfs_backend_op_duration_seconds", "Storage backend call durations",
    ["backend_type", "operation"])
LINK_GENERATIONS = Counter(
    "callfs_single_use_link_generations", "Single-use download links generated")
LINK_CONSUMPTIONS = Counter(
    "callfs_single_use_link_consumptions", "Single-use link redemptions by outcome", ["status"])

BYTES_IN = Counter("callfs_bytes_received", "Request body bytes announced by clients")
BYTES_OUT = Counter("callfs_bytes_sent", "Response body bytes (Content-Length) sent to clients")
LOCK_WAIT = Histogram("callfs_lock_wait_seconds", "Time spent waiting for path locks",
                      ["backend"])
LOCK_TIMEOUTS = Counter("callfs_lock_timeouts", "Lock waits that gave up", ["backend"])
IDLE_CLOSES = Counter("callfs_idle_connections_closed",
                      "Connections closed after CALLFS_IDLE_TIMEOUT without a byte moving")
UPLOADS_TIMED_OUT = Counter("callfs_uploads_timed_out",
                            "Uploads cut by CALLFS_IDLE_TIMEOUT (nothing of them is stored)")
PEER_REQUESTS = Counter("callfs_peer_requests", "Requests sent to other nodes",
                        ["peer", "method"])
PEER_FAILURES = Counter("callfs_peer_failures", "Requests to other nodes that failed to connect",
                        ["peer"])

# URL names -> the route patterns upstream uses as the `path` label.
ROUTE_LABELS = {
    "files": "/v1/files/*",
    "directories": "/v1/directories/*",
    "v1-unknown": "/v1/*",
    "health": "/health",
    "metrics": "/metrics",
    "links-generate": "/v1/links/generate",
    "download": "/download/{token}",
    "ready": "/ready",
    "internal-blob": "/v1/internal/blobs/*",
    "links-list": "/v1/links/",
    "links-detail": "/v1/links/{id}",
    "nodes-list": "/v1/nodes/",
    "nodes-detail": "/v1/nodes/{id}",
    "schema": "/v1/schema/",
    "docs": "/v1/docs/",
}


# Any other method shares one label: a client inventing method names (gunicorn passes every
# token through) must not add a time series per name to every worker's samples and every scrape.
METHOD_LABELS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "OTHER"


def method_label(method: str) -> str:
    return method if method in METHOD_LABELS else OTHER_METHOD


def route_label(request) -> str:
    match = getattr(request, "resolver_match", None)
    if match is None:
        return "unmatched"
    if match.namespace == "admin":
        return "/admin/*"
    return ROUTE_LABELS.get(match.url_name or "", match.route or "unmatched")


@functools.lru_cache(maxsize=4096)
def series(metric, *labels: str):
    """`metric.labels(*labels)`, kept: prometheus_client validates the values and takes a lock
    on every call, and a small GET updates five labelled series (6% of its instructions went to
    metrics). Every label value here comes from a bounded set; the bound is a backstop."""
    return metric.labels(*labels)


def record_file_operation(operation: str, backend: str) -> None:
    series(FILE_OPERATIONS, operation, backend).inc()


def observe_backend_call(backend: str, operation: str, seconds: float) -> None:
    series(BACKEND_OP_DURATION, backend, operation).observe(seconds)


class _SortedSamples:
    """Emit each family's samples sorted by labels, as upstream's Go client does (§12): a scraper
    that takes the first POST line then sees the same series every time."""

    def __init__(self, registry):
        self.registry = registry

    def collect(self):
        for family in self.registry.collect():
            family.samples.sort(key=lambda s: (s.name, sorted(s.labels.items())))
            yield family


def exposition() -> bytes:
    """The text exposition of every metric, merged across gunicorn workers when needed."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = DEFAULT_REGISTRY
    return generate_latest(_SortedSamples(registry))

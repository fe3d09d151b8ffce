"""CallFS's own Prometheus metrics, with upstream's names and labels (API.md §12).

Under gunicorn, `gunicorn.conf.py` sets PROMETHEUS_MULTIPROC_DIR before the workers start, so
every worker writes its samples there and /metrics adds them up, and reports the standard
process metrics of every live worker, labelled by `pid`.
"""

from __future__ import annotations

import functools
import os
import re

from prometheus_client import REGISTRY as DEFAULT_REGISTRY
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
    multiprocess,
)
from prometheus_client.metrics_core import Metric

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
# Upstream's name, unlabelled. "livesum": the workers' values added up, a dead worker's dropped
# (gunicorn.conf.py's child_exit), so a killed holder does not leave a lock counted for ever.
ACTIVE_LOCKS = Gauge("callfs_active_locks", "Locks held now (each name of a lock set counts)",
                     multiprocess_mode="livesum")
IDLE_CLOSES = Counter("callfs_idle_connections_closed",
                      "Connections closed after CALLFS_IDLE_TIMEOUT without a byte moving")
UPLOADS_TIMED_OUT = Counter("callfs_uploads_timed_out",
                            "Uploads cut by CALLFS_IDLE_TIMEOUT (nothing of them is stored)")
PEER_REQUESTS = Counter("callfs_peer_requests", "Requests sent to other nodes",
                        ["peer", "method"])
PEER_FAILURES = Counter("callfs_peer_failures", "Requests to other nodes that failed to connect",
                        ["peer"])
REPLICA_WRITE_FAILURES = Counter(
    "callfs_replica_write_failures", "Copies of a file on another node that could not be written")
REPAIRED_COPIES = Counter("callfs_repair_copies", "Copies made by repair (manage.py repair, or "
                          "a node's background repair)")
REPAIRED_BYTES = Counter("callfs_repair_bytes", "Bytes copied by repair")
# Set by each repair round, which counts the whole cluster: the latest count of any worker.
UNDER_REPLICATED = Gauge("callfs_under_replicated_files",
                         "Local-disk files with fewer good copies than CALLFS_REPLICAS",
                         multiprocess_mode="mostrecent")

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
    on every call, and a small GET updates five labelled series: a noticeable part of its
    instructions went to metrics (measured: BENCHMARKS.md). Every label value here comes from a
    bounded set; the bound is a backstop."""
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


# The files each process writes into PROMETHEUS_MULTIPROC_DIR: counter_<pid>.db,
# gauge_livesum_<pid>.db, ...
_METRICS_FILE = re.compile(r"_(\d+)\.db\Z")


def _parent_of(pid: int) -> int | None:
    """The parent of a running process; None once it has exited (a zombie too)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            state, parent = stat.read().rsplit(b")", 1)[1].split()[:2]
    except (OSError, ValueError):
        return None
    return None if state in (b"Z", b"X") else int(parent)


def worker_pids(directory: str, parent: int | None = None) -> list[int]:
    """The live gunicorn workers: processes that write metrics into `directory` and are
    children of `parent` (this process's parent, the gunicorn master), this process included.
    Files of dead workers stay there (their counters still count) and the master writes some
    too; neither is a worker. A pid reused by another program is not a child of the master."""
    parent = os.getppid() if parent is None else parent
    try:
        names = os.listdir(directory)
    except OSError:
        names = []
    writers = {int(found.group(1)) for found in map(_METRICS_FILE.search, names) if found}
    own = os.getpid()
    return sorted({own} | {pid for pid in writers - {own} if _parent_of(pid) == parent})


class _WorkerProcesses:
    """prometheus_client's process metrics (memory, CPU, descriptors, start time) for every
    live worker, each sample labelled `pid`: its ProcessCollector reads one process's /proc
    entries and does not work across the processes of the multiprocess mode."""

    def __init__(self, directory: str):
        self.directory = directory

    def collect(self):
        families: dict[str, Metric] = {}
        for pid in worker_pids(self.directory):
            collector = ProcessCollector(pid=lambda pid=pid: pid, registry=None)
            for family in collector.collect():  # nothing for a worker gone meanwhile
                merged = families.setdefault(family.name, Metric(
                    family.name, family.documentation, family.type))
                merged.samples.extend(sample._replace(labels={"pid": str(pid)})
                                      for sample in family.samples)
        return list(families.values())


def _files_from_the_start() -> None:
    """In a forked process (a gunicorn worker): have prometheus_client make this process's
    files now. It makes them at the first sample a process writes, and worker_pids() finds
    workers by their files: one that has served nothing yet would be missing."""
    ACTIVE_LOCKS.inc(0)


# gunicorn's master imports this module (callfs_site.workers) before it forks the workers.
os.register_at_fork(after_in_child=_files_from_the_start)


def exposition() -> bytes:
    """The text exposition of every metric, merged across gunicorn workers when needed."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        registry.register(_WorkerProcesses(directory))
    else:
        registry = DEFAULT_REGISTRY  # its own ProcessCollector reports this one process
    return generate_latest(_SortedSamples(registry))

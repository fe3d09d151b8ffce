"""gunicorn settings for CallFS: `gunicorn -c gunicorn.conf.py callfs_site.wsgi:application`.

One process worker per CPU, each pinned to its CPU, each serving all of its connections as
greenlets (gunicorn's gevent worker): on these 2-core machines processes beat threads (the GIL),
and a slow client, a stalled one or a long transfer costs a socket, never a thread.
Environment: CALLFS_BIND, CALLFS_METRICS_BIND, CALLFS_WORKERS, CALLFS_MAX_CONNECTIONS,
CALLFS_IDLE_TIMEOUT, CALLFS_PIN_WORKERS, CALLFS_TLS_CERT, CALLFS_TLS_KEY.
"""

import os
import shutil
import socket
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "callfs_site.settings")

from callfs_site.config import exit_on_bad_config  # noqa: E402

# A bad setting stops start-up here, in the master, with one line (not a worker traceback).
_config = exit_on_bad_config()

wsgi_app = "callfs_site.wsgi:application"
# CALLFS_BIND (or server.listen_addr of a CALLFS_CONFIG file), then the metrics listener's
# CALLFS_METRICS_BIND (metrics.listen_addr): on that one the application serves only /metrics,
# without a key, and /health (callfs_site.middleware). With TLS on, it is HTTPS too.
bind = [_config.bind, *([_config.metrics_bind] if _config.metrics_bind else [])]
# Measured on 2 cores (BENCHMARKS.md): one process per CPU served the most small requests once
# pinned; more processes only add switching.
_cpus = sorted(os.sched_getaffinity(0))
workers = int(os.environ.get("CALLFS_WORKERS", len(_cpus)))
# Connections each worker holds at once (gevent's pool); past it, new ones wait in the kernel's
# backlog. A waiting connection costs a socket and a greenlet (BENCHMARKS.md, "Slow clients").
worker_connections = int(os.environ.get("CALLFS_MAX_CONNECTIONS", 2000))
# Pinning keeps a worker on one CPU's caches, which serves more small GETs (BENCHMARKS.md).
# Its pool threads (fsync, hashing) leave the pin (callfs_site.offload).
# CALLFS_PIN_WORKERS=0 leaves placement to the scheduler (e.g. when other busy services share
# the machine).
_pin_workers = os.environ.get("CALLFS_PIN_WORKERS", "1") not in ("0", "false", "no")
# A pool thread back from fsync() waits for the GIL up to this long while the event loop
# computes (default 5 ms): 0.5 ms made durable small PUTs much faster (BENCHMARKS.md).
_switch_interval = 0.0005
# gunicorn's gevent worker with an idle timeout, zero-copy downloads and JSON refusals
# (callfs_site/workers.py). Never the sync worker (it kills any request that runs past
# `timeout`) nor gthread (a node serves workers x threads requests at once: a few slow clients
# froze it).
worker_class = "callfs_site.workers.GeventWorker"
timeout = 120  # worker heartbeat; the event loop keeps beating while requests stream
graceful_timeout = 30
keepalive = 5  # also the longest wait for a request head
# Each worker listens on its own SO_REUSEPORT socket and the kernel spreads new connections over
# them: with one shared socket, whichever worker woke first could take every keep-alive
# connection of a burst and leave its CPU's sibling idle (seen as slow benchmark runs).
# Not for unix sockets, inherited descriptors (fd://) or systemd socket activation, which gunicorn
# ignores when each worker binds its own socket.
reuse_port = not _config.bind.startswith(("unix:", "fd://")) and "LISTEN_FDS" not in os.environ
limit_request_line = 8190  # the largest gunicorn allows: long (percent-encoded) paths fit
# Request heads go through gunicorn's C parser (gunicorn_h1c, requirements.txt): ~15 us less per
# small request than its Python parser, which gunicorn falls back to where it is not installed
# (BENCHMARKS.md, thirteenth session).
http_parser = "auto"
control_socket_disable = True  # one shared ~/.gunicorn socket would clash between instances
accesslog = None  # CallFS logs every request itself (callfs.request)
errorlog = "-"

certfile = os.environ.get("CALLFS_TLS_CERT") or None
keyfile = os.environ.get("CALLFS_TLS_KEY") or None
if bool(certfile) != bool(keyfile):
    print("callfs: configuration error: CALLFS_TLS_CERT and CALLFS_TLS_KEY go together",
          file=sys.stderr)
    raise SystemExit(2)

if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    # Each worker writes its metric samples here; /metrics adds them up.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="callfs-metrics-")
    _own_metrics_dir = True
else:
    _own_metrics_dir = False


def post_worker_init(worker):
    """Each worker keeps this node registered and heartbeating (a cheap UPDATE every 10 s) and
    runs its share of background repair (filesystem/repair.py): no thread runs in the master,
    so nothing unsafe is inherited across fork()."""
    from django.conf import settings

    from cluster.services import start_heartbeat
    from filesystem.repair import start_background_repair

    start_heartbeat(settings.CALLFS.node_id, settings.CALLFS.node_url)
    start_background_repair()


def on_starting(server):
    """With reuse_port each worker binds its own socket: on a port another program holds
    gunicorn would respawn failing workers forever, and beside another instance of itself it
    would silently split the traffic. Find out here, once, and stop."""
    if not reuse_port:
        return
    from gunicorn.util import parse_address

    for address in bind:
        host, port = parse_address(address)
        try:  # without SO_REUSEPORT: so another instance sharing the port is refused too
            socket.create_server((host, port), family=socket.AF_INET6 if ":" in host
                                 else socket.AF_INET).close()
        except OSError as exc:
            print(f"callfs: cannot listen on {address}: {exc.strerror}", file=sys.stderr)
            raise SystemExit(2) from None
    # gunicorn's own "Listening at" line stays empty: the workers bind, not the master.
    server.log.info("Listening at: %s (a socket per worker)", ", ".join(
        f"http{'s' if certfile else ''}://{address}" for address in bind))


def pre_fork(server, worker):
    """In the master: the CPU with the fewest live workers (respawns fill the gaps)."""
    if _pin_workers:
        used = [getattr(w, "callfs_cpu", None) for w in server.WORKERS.values()]
        worker.callfs_cpu = min(_cpus, key=used.count)


def post_fork(server, worker):
    worker.idle_timeout = _config.idle_timeout  # CALLFS_IDLE_TIMEOUT (callfs_site/workers.py)
    if not _config.stock:  # its settings read once, not on every request (a fast path)
        from callfs_site.workers import SettledConfig

        worker.cfg = SettledConfig(worker.cfg)
    sys.setswitchinterval(_switch_interval)
    if _pin_workers:
        from callfs_site.cpus import pin_process

        pin_process(worker.callfs_cpu)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if _own_metrics_dir:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)

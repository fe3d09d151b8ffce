"""gunicorn settings for CallFS: `gunicorn -c gunicorn.conf.py callfs_site.wsgi:application`.

One process worker per CPU, each pinned to its CPU, with a few threads: on these 2-core machines
processes beat threads (the GIL), while the threads let a worker keep serving while another
request streams a large file or waits for fsync. Environment: CALLFS_BIND, CALLFS_WORKERS,
CALLFS_THREADS, CALLFS_PIN_WORKERS, CALLFS_TLS_CERT, CALLFS_TLS_KEY.
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
bind = _config.bind  # CALLFS_BIND, or listen_addr of a CALLFS_CONFIG file
# Measured on 2 cores (BENCHMARKS.md): one process per CPU with 2 threads each served the most
# small requests once pinned; more threads only add GIL contention, more processes switching.
_cpus = sorted(os.sched_getaffinity(0))
workers = int(os.environ.get("CALLFS_WORKERS", len(_cpus)))
threads = int(os.environ.get("CALLFS_THREADS", 2))
# Pinning keeps a worker's threads on one CPU's caches: it took a quarter off the CPU time of a
# small GET when gthread still handed each request between threads, +3% GETs since.
# CALLFS_PIN_WORKERS=0 leaves placement to the scheduler (e.g. when other busy services share
# the machine).
_pin_workers = os.environ.get("CALLFS_PIN_WORKERS", "1") not in ("0", "false", "no")
# A thread back from fsync() waits for the GIL up to this long while another computes (default
# 5 ms): 0.5 ms took durable small PUTs from ~630/s to ~900/s.
_switch_interval = 0.0005
# Never the sync worker: it kills any request that runs past `timeout`, i.e. slow transfers.
# gthread's code, but every thread polls and serves by itself, without gthread's two hand-overs
# between threads per request (callfs_site/workers.py).
worker_class = "callfs_site.workers.PollingThreadWorker"
timeout = 120  # worker heartbeat; gthread keeps beating while a request streams
graceful_timeout = 30
keepalive = 5
# Each worker listens on its own SO_REUSEPORT socket and the kernel spreads new connections over
# them: with one shared socket, whichever worker woke first could take every keep-alive
# connection of a burst and leave its CPU's sibling idle (seen as half-speed benchmark runs).
# Not for unix sockets, inherited descriptors (fd://) or systemd socket activation, which gunicorn
# ignores when each worker binds its own socket.
reuse_port = not bind.startswith(("unix:", "fd://")) and "LISTEN_FDS" not in os.environ
limit_request_line = 8190  # the largest gunicorn allows: long (percent-encoded) paths fit
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
    """Each worker keeps this node registered and heartbeating (a cheap UPDATE every 10 s):
    no thread runs in the master, so nothing unsafe is inherited across fork()."""
    from django.conf import settings

    from cluster.services import start_heartbeat

    start_heartbeat(settings.CALLFS.node_id, settings.CALLFS.node_url)


def on_starting(server):
    """With reuse_port each worker binds its own socket: on a port another program holds
    gunicorn would respawn failing workers forever, and beside another instance of itself it
    would silently split the traffic. Find out here, once, and stop."""
    if not reuse_port:
        return
    from gunicorn.util import parse_address

    host, port = parse_address(bind)
    try:  # without SO_REUSEPORT: so another instance sharing the port is refused too
        socket.create_server((host, port), family=socket.AF_INET6 if ":" in host
                             else socket.AF_INET).close()
    except OSError as exc:
        print(f"callfs: cannot listen on {bind}: {exc.strerror}", file=sys.stderr)
        raise SystemExit(2) from None
    # gunicorn's own "Listening at" line stays empty: the workers bind, not the master.
    server.log.info("Listening at: http%s://%s (a socket per worker)", "s" if certfile else "",
                    bind)


def pre_fork(server, worker):
    """In the master: the CPU with the fewest live workers (respawns fill the gaps)."""
    if _pin_workers:
        used = [getattr(w, "callfs_cpu", None) for w in server.WORKERS.values()]
        worker.callfs_cpu = min(_cpus, key=used.count)


def post_fork(server, worker):
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

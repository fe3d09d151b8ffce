"""gunicorn settings for CallFS: `gunicorn -c gunicorn.conf.py callfs_site.wsgi:application`.

Process workers with a few threads each: on these 2-core machines processes beat threads (the
GIL), while the threads let one worker keep serving while another request streams a large file.
Environment: CALLFS_BIND, CALLFS_WORKERS, CALLFS_THREADS, CALLFS_TLS_CERT, CALLFS_TLS_KEY.
"""

import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "callfs_site.settings")

from callfs_site.config import exit_on_bad_config  # noqa: E402

# A bad setting stops start-up here, in the master, with one line (not a worker traceback).
_config = exit_on_bad_config()

wsgi_app = "callfs_site.wsgi:application"
bind = _config.bind  # CALLFS_BIND, or listen_addr of a CALLFS_CONFIG file
# Measured on 2 cores (BENCHMARKS.md): cores + 1 processes with 2 threads each served the most
# small requests; more threads only add GIL contention, more processes only add switching.
workers = int(os.environ.get("CALLFS_WORKERS", (os.cpu_count() or 1) + 1))
threads = int(os.environ.get("CALLFS_THREADS", 2))
# Never the sync worker: it kills any request that runs past `timeout`, i.e. slow transfers.
worker_class = "gthread"
timeout = 120  # worker heartbeat; gthread keeps beating while a request streams
graceful_timeout = 30
keepalive = 5
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


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if _own_metrics_dir:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)

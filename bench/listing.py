"""Listing a million entries: time to first byte, total time and the worker's memory.

Runs CallFS under gunicorn (the project's gunicorn.conf.py, one gevent worker, SQLite in a temp
dir outside the repository), fills the database directly with a bulk insert (creating a million
files through the API would take hours), then measures, for each tree shape:

- the complete listing (`GET /v1/directories/...`, recursive for the trees; streamed),
- the same directory as a bare array (`GET /v1/files/...`, flat shape only),
- every page with `limit` (default 10,000), following `next_cursor` to the end,

each as time to the response head, time to the first body byte, total time, bytes, entries
(counted in the body and checked against its `count`) and the worker's RSS: before (after a
warm-up listing), peak while answering and after, sampled every 10 ms from /proc.

Shapes: `flat` (one directory of N files), `tree` (sqrt(N) directories of sqrt(N) files each,
listed recursively) and `small` (N/10 directories of 9 files each, recursively: many small
directories). The temp dir (database only, no blobs: listings never read bytes) is removed at
the end unless --keep.

    python bench/listing.py [--entries 1000000] [--shapes flat,tree,small] [--limit 10000]
                            [--code DIR] [--work-dir DIR] [--keep] [--json FILE]

`--code DIR` serves from another checkout (e.g. `git archive HEAD | tar -x -C DIR`) with this
venv, to compare versions; its listings may hold everything in memory, so start small.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from hashlib import sha256
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
KEY = "bench-" + "0123456789abcdef" * 2
FILE_MODE, DIRECTORY_MODE = 0o644, 0o755
INSERT_BATCH = 50_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:  # gone
        pass
    return 0


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


class Server:
    """gunicorn serving the code in `code` with data under `work`: SQLite there, or the
    PostgreSQL database at `database_url`; one worker unless told (None: the shipped default)."""

    def __init__(self, work: Path, code: Path, *, database_url: str | None = None,
                 workers: int | None = 1):
        self.port = free_port()
        self.database = work / "db.sqlite3"
        self.database_url = database_url or f"sqlite:///{self.database}"
        self.env = {**os.environ,
                    "DATABASE_URL": self.database_url,
                    "CALLFS_DATA_DIR": str(work / "data"),
                    "CALLFS_API_KEYS": f"bench:{KEY}",
                    "CALLFS_BIND": f"127.0.0.1:{self.port}",
                    "CALLFS_LOG_LEVEL": "warning",
                    "DJANGO_SECRET_KEY": secrets.token_urlsafe(32),
                    "DJANGO_SETTINGS_MODULE": "callfs_site.settings"}
        if workers is not None:
            self.env["CALLFS_WORKERS"] = str(workers)
        else:
            self.env.pop("CALLFS_WORKERS", None)
        self.env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.code, self.log = code, work / "gunicorn.log"
        subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=code,
                       env=self.env, check=True, capture_output=True)
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"], cwd=code,
                env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 30
        while True:
            try:
                probe = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                probe.request("GET", "/health")
                if probe.getresponse().status == 200 and children(self.process.pid):
                    break
            except OSError:
                pass
            finally:
                probe.close()
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise RuntimeError(f"gunicorn did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.1)
        self.worker = children(self.process.pid)[0]

    @property
    def workers(self) -> list[int]:
        return children(self.process.pid)

    def request(self, method: str, path: str) -> tuple[int, bytes]:
        self.connection.request(method, path, headers={"Authorization": f"Bearer {KEY}"})
        response = self.connection.getresponse()
        return response.status, response.read()

    @property
    def connection(self) -> http.client.HTTPConnection:
        """One keep-alive connection for every request, as a client paging through would
        use: under the gevent worker each client connection is a greenlet with database
        connections of its own, and a new one per request would measure those too (a
        SQLite connection left by a finished greenlet holds its page cache, up to 2 MiB,
        until Python's cyclic collector runs)."""
        if getattr(self, "_connection", None) is None:
            self._connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        return self._connection

    def reconnect(self) -> None:
        """A fresh client connection (the server closes one idle for its keep-alive, 5 s)."""
        if getattr(self, "_connection", None) is not None:
            self._connection.close()
            self._connection = None

    def stop(self) -> None:
        if getattr(self, "_connection", None) is not None:
            self._connection.close()
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def fill(server: Server, shape: str, entries: int) -> tuple[str, int]:
    """Insert a tree of about `entries` entries under /<shape> straight into SQLite; returns
    (its path, the number of entries below it)."""
    top = f"/{shape}"
    status, body = server.request("POST", f"/v1/files{top}/")
    assert status == 201, (status, body)
    db = sqlite3.connect(server.database, timeout=60)
    db.execute("PRAGMA journal_mode=WAL")
    top_id, owner, group = db.execute(
        "SELECT id, owner_id, group_id FROM filesystem_inode WHERE path = ?", (top,)).fetchone()
    stamp = datetime.now(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
    next_id = db.execute("SELECT MAX(id) FROM filesystem_inode").fetchone()[0] + 1
    rows: list[tuple] = []
    total = 0

    def add(parent: int, parent_path: str, name: str, kind: str) -> int:
        nonlocal next_id, total
        path = f"{parent_path}/{name}"
        rows.append((next_id, name, path, sha256(path.encode()).hexdigest(), kind, 0,
                     DIRECTORY_MODE if kind == "directory" else FILE_MODE, stamp, stamp,
                     "localfs", "", "", "", group, owner, parent))
        next_id += 1
        total += 1
        if len(rows) >= INSERT_BATCH:
            flush()
        return next_id - 1

    def flush() -> None:
        db.executemany(
            "INSERT INTO filesystem_inode (id, name, path, path_hash, type, size, mode, ctime, "
            "mtime, backend, node_id, blob_key, sha256, group_id, owner_id, parent_id) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        rows.clear()

    if shape == "flat":
        for index in range(entries):
            add(top_id, top, f"file-{index:07d}.txt", "file")
    else:
        per = 9 if shape == "small" else max(1, round(math.sqrt(entries)) - 1)
        directories = max(1, entries // (per + 1))
        for d in range(directories):
            name = f"dir-{d:06d}"
            directory = add(top_id, top, name, "directory")
            for f in range(per):
                add(directory, f"{top}/{name}", f"file-{f:05d}.txt", "file")
    flush()
    db.commit()
    db.close()
    return top, total


def measure(server: Server, target: str) -> dict:
    """One GET: head and first-byte times, total time, bytes, entries and worker RSS."""
    samples: list[int] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            samples.append(rss(server.worker))
            time.sleep(0.01)

    before = rss(server.worker)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    connection = server.connection
    started = time.perf_counter()
    connection.request("GET", target, headers={"Authorization": f"Bearer {KEY}"})
    response = connection.getresponse()
    head = time.perf_counter() - started
    first = response.read(1)
    first_byte = time.perf_counter() - started
    size, counted, carry, start, tail = 1, 0, first, first, b""
    while True:
        piece = response.read(256 * 1024)
        if not piece:
            break
        size += len(piece)
        if len(start) < 400:
            start = (start + piece)[:400]
        joined = carry + piece
        counted += joined.count(b'{"name":')
        carry = joined[-8:]
        counted -= carry.count(b'{"name":')
        tail = (tail + piece)[-300:]
    counted += carry.count(b'{"name":')
    total = time.perf_counter() - started
    done.set()
    sampler.join()
    stated = None
    for end in (start.split(b'"items":', 1)[0], tail):  # count before or after the items
        if b'"count":' in end:
            stated = int(end.rsplit(b'"count":', 1)[1].split(b",")[0].split(b"}")[0])
    cursor = None
    if b'"next_cursor":"' in tail:
        cursor = tail.rsplit(b'"next_cursor":"', 1)[1].split(b'"')[0].decode()
    time.sleep(0.05)
    return {"status": response.status, "streamed": response.getheader("Content-Length") is None,
            "head_s": round(head, 4), "first_byte_s": round(first_byte, 4),
            "total_s": round(total, 3), "bytes": size, "entries": counted,
            "count": stated, "next_cursor": cursor,
            "rss_before_mib": round(before / 2**20, 1),
            "rss_peak_mib": round(max(samples + [before]) / 2**20, 1),
            "rss_growth_mib": round((max(samples + [before]) - before) / 2**20, 1),
            "rss_after_mib": round(rss(server.worker) / 2**20, 1)}


def through_pages(server: Server, url: str, limit: int) -> dict:
    pages, entries, slowest, peak, started = 0, 0, 0.0, 0.0, time.perf_counter()
    before = rss(server.worker)
    cursor = None
    while True:
        target = f"{url}{'&' if '?' in url else '?'}limit={limit}"
        if cursor:
            target += f"&cursor={quote(cursor)}"
        result = measure(server, target)
        assert result["status"] == 200, result
        assert result["count"] == result["entries"], result
        pages += 1
        entries += result["entries"]
        slowest = max(slowest, result["total_s"])
        peak = max(peak, result["rss_peak_mib"])
        cursor = result["next_cursor"]
        if not cursor:
            break
    return {"pages": pages, "entries": entries, "total_s": round(time.perf_counter() - started, 2),
            "slowest_page_s": slowest, "rss_before_mib": round(before / 2**20, 1),
            "rss_peak_mib": peak, "rss_growth_mib": round(peak - before / 2**20, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--shapes", default="flat,tree,small")
    parser.add_argument("--limit", type=int, default=10_000)
    parser.add_argument("--code", type=Path, default=ROOT)
    parser.add_argument("--work-dir", type=Path)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="callfs-listing-", dir=args.work_dir))
    server = Server(work, args.code.resolve())
    results: dict[str, dict] = {}
    try:
        status, _ = server.request("POST", "/v1/files/warm/")
        for index in range(50):
            server.request("POST", f"/v1/files/warm/w{index}.txt")
        for _ in range(3):  # Django, DRF and the listing code warmed up
            server.request("GET", "/v1/directories/warm?recursive=true")
        for shape in args.shapes.split(","):
            started = time.perf_counter()
            top, count = fill(server, shape, args.entries)
            print(f"{shape}: {count:,} entries inserted in {time.perf_counter() - started:.1f} s",
                  flush=True)
            server.reconnect()
            server.request("GET", "/v1/directories/warm?recursive=true")
            recursive = "" if shape == "flat" else "?recursive=true"
            url = f"/v1/directories{top}{recursive}"
            found = {"entries": count, "complete": measure(server, url)}
            if shape == "flat":
                time.sleep(0.2)  # the worker's RSS settles: "after" is after, not during
                found["files_array"] = measure(server, f"/v1/files{top}")
            found["pages"] = through_pages(server, url, args.limit)
            for result in (found["complete"], found.get("files_array")):
                if result:
                    result.pop("next_cursor")
                    assert result["status"] == 200, result
                    assert result["entries"] == count, (result, count)
                    assert result["count"] in (None, count), result
            assert found["pages"]["entries"] == count, found["pages"]
            results[shape] = found
            print(json.dumps({shape: found}, indent=2), flush=True)
    finally:
        server.stop()
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""How costs grow with the tree, on SQLite and on PostgreSQL, and what other writers see while
a long operation runs.

For each database, one node under gunicorn (the project's gunicorn.conf.py and its defaults;
data in a temp dir outside the repository; PostgreSQL started by scripts/services.sh):

1. **create**: `--files` files (100 bytes each, durable) through the API into /big (directories
   of 1,000) and `--small-files` more into /small, over 8 keep-alive connections; the rate for
   each slice of 10,000 shows whether creating slows as the table grows;
2. **lookups**: GETs of random files under /big with wrk for `--seconds`, at the table's size
   after (1), then again after a bulk insert (metadata only, straight into the database) has
   brought the table to `--inodes` rows;
3. **rename** /small, then /big (PATCH `name`), and
4. **recursive delete** of both (`DELETE ...?recursive=true`), last: deleting tens of thousands
   of files slows file creation on this disk for minutes.

While each rename and delete runs, two writers PUT a 4 KiB file every 50 ms, one at a time:
`outside` into another directory, `inside` into a directory of the tree being changed. Their
answers (status, error code, time) say what a user sees: waits, 503 LOCK_TIMEOUT, or nothing.

    python bench/scale.py [--databases sqlite,postgres] [--files 100000] [--small-files 20000]
                          [--inodes 1000000] [--seconds 10] [--code DIR] [--work-dir DIR]
                          [--json FILE]

PostgreSQL runs as the tests run it (scripts/services.sh: fsync off), so its figures leave out
the disk; SQLite's include it. The file creates are durable on both (blobs are fsynced).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from hashlib import sha256
from pathlib import Path

from listing import KEY, Server, free_port, rss

ROOT = Path(__file__).resolve().parent.parent
PER_DIRECTORY = 1000
SLICE = 10_000
BODY = b"x" * 100
WRITER_BODY = b"w" * 4096
WRITER_PAUSE = 0.05
FILL_BATCH = 20_000
COLUMNS = ("id", "name", "path", "path_hash", "type", "size", "mode", "ctime", "mtime",
           "backend", "node_id", "blob_key", "sha256", "group_id", "owner_id", "parent_id")


class Client:
    """One keep-alive connection with the bench's key; reconnects after the server closes it."""

    def __init__(self, port: int, timeout: float = 900):
        self.port, self.timeout, self.connection = port, timeout, None

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        for attempt in (1, 2):
            if self.connection is None:
                self.connection = http.client.HTTPConnection("127.0.0.1", self.port,
                                                             timeout=self.timeout)
            try:
                self.connection.request(method, path, body=body, headers={
                    "Authorization": f"Bearer {KEY}", **(headers or {})})
                response = self.connection.getresponse()
                return response.status, response.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.connection.close()
                self.connection = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


def create_files(server: Server, top: str, count: int) -> dict:
    """`count` files under `top`, directories of PER_DIRECTORY; the rate per slice."""
    directories = -(-count // PER_DIRECTORY)
    client = Client(server.port)
    for d in range(directories):
        status, body = client.request("POST", f"/v1/files{top}/d{d:03d}/")
        assert status == 201, (status, body)
    local = threading.local()
    slice_ends: dict[int, float] = {}
    done = [0]
    lock = threading.Lock()
    started = time.perf_counter()

    def put(index: int) -> None:
        if not hasattr(local, "client"):
            local.client = Client(server.port)
        path = f"/v1/files{top}/d{index // PER_DIRECTORY:03d}/f{index % PER_DIRECTORY:05d}"
        status, body = local.client.request("PUT", path, BODY)
        assert status == 201, (status, body)
        with lock:
            done[0] += 1
            if done[0] % SLICE == 0 or done[0] == count:
                slice_ends[done[0]] = time.perf_counter() - started

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, range(count)))
    total = time.perf_counter() - started
    rates, previous_count, previous_end = [], 0, 0.0
    for ended_at_count, end in sorted(slice_ends.items()):
        rates.append(round((ended_at_count - previous_count) / (end - previous_end)))
        previous_count, previous_end = ended_at_count, end
    return {"files": count, "seconds": round(total, 1), "per_second": round(count / total),
            "per_second_by_slice": rates}


def lookups(server: Server, top: str, files: int, seconds: int) -> dict:
    """wrk GETs of random files under `top` (each a path lookup, permission checks and a read)."""
    cmd = ["wrk", "-t2", "-c16", f"-d{seconds}s", "--latency", "-s",
           str(ROOT / "bench" / "lookup.lua"), f"http://127.0.0.1:{server.port}"]
    env = {**os.environ, "BENCH_AUTH": KEY, "BENCH_PREFIX": f"/v1/files{top}",
           "BENCH_FILES": str(files), "BENCH_PER_DIRECTORY": str(PER_DIRECTORY)}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode:
        raise RuntimeError(f"wrk failed: {done.stdout}{done.stderr}")
    out = done.stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)

    def percentile(p: str) -> float:
        value, unit = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)", out, re.M).groups()
        return round(float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit], 2)

    return {"per_second": round(float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))),
            "p50_ms": percentile("50"), "p99_ms": percentile("99"),
            "errors": int(errors.group(1)) if errors else 0}


def inode_count(server: Server) -> int:
    return int(_query(server, "SELECT COUNT(*) FROM filesystem_inode")[0][0])


def _query(server: Server, sql: str, params: tuple = ()) -> list[tuple]:
    if server.database_url.startswith("sqlite"):
        import sqlite3
        with sqlite3.connect(server.database, timeout=60) as db:
            return db.execute(sql.replace("%s", "?"), params).fetchall()
    import psycopg
    with psycopg.connect(server.database_url.replace("postgres://", "postgresql://")) as db:
        return db.execute(sql, params).fetchall()


def fill(server: Server, top: str, count: int) -> float:
    """Insert `count` metadata-only inodes under `top` (directories of PER_DIRECTORY files)
    straight into the database; the seconds it took."""
    started = time.perf_counter()
    client = Client(server.port)
    status, body = client.request("POST", f"/v1/files{top}/")
    assert status == 201, (status, body)
    (top_id, owner, group), = _query(
        server, "SELECT id, owner_id, group_id FROM filesystem_inode WHERE path = %s", (top,))
    next_id = _query(server, "SELECT MAX(id) FROM filesystem_inode")[0][0] + 1
    now = datetime.now(UTC)
    sqlite = server.database_url.startswith("sqlite")
    stamp = now.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds") if sqlite \
        else now
    rows: list[tuple] = []

    def add(parent: int, path: str, kind: str) -> int:
        nonlocal next_id
        rows.append((next_id, path.rsplit("/", 1)[1], path, sha256(path.encode()).hexdigest(),
                     kind, 0, 0o755 if kind == "directory" else 0o644, stamp, stamp, "localfs",
                     "", "", "", group, owner, parent))
        next_id += 1
        return next_id - 1

    writer = _SqliteWriter(server) if sqlite else _PostgresWriter(server)
    added = 0
    for d in range(-(-count // (PER_DIRECTORY + 1))):
        directory = add(top_id, f"{top}/d{d:04d}", "directory")
        for f in range(min(PER_DIRECTORY, count - added - 1)):
            add(directory, f"{top}/d{d:04d}/f{f:05d}", "file")
        added += PER_DIRECTORY + 1
        if len(rows) >= FILL_BATCH:
            writer.write(rows)
            rows.clear()
    writer.write(rows)
    writer.close()
    return round(time.perf_counter() - started, 1)


class _SqliteWriter:
    def __init__(self, server: Server):
        import sqlite3
        self.db = sqlite3.connect(server.database, timeout=60)

    def write(self, rows: list[tuple]) -> None:
        self.db.executemany(f"INSERT INTO filesystem_inode ({', '.join(COLUMNS)}) "  # noqa: S608
                            f"VALUES ({', '.join('?' * len(COLUMNS))})", rows)
        self.db.commit()

    def close(self) -> None:
        self.db.close()


class _PostgresWriter:
    def __init__(self, server: Server):
        import psycopg
        self.db = psycopg.connect(server.database_url.replace("postgres://", "postgresql://"))

    def write(self, rows: list[tuple]) -> None:
        with self.db.cursor() as cursor, cursor.copy(
                f"COPY filesystem_inode ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        self.db.commit()

    def close(self) -> None:
        self.db.execute("SELECT setval(pg_get_serial_sequence('filesystem_inode', 'id'), "
                        "(SELECT MAX(id) FROM filesystem_inode))")
        self.db.execute("ANALYZE filesystem_inode")  # the planner learns the table's new size
        self.db.commit()
        self.db.close()


@dataclass
class Writer:
    """PUTs one small file after another into `directory` until stopped; every answer kept."""

    port: int
    directory: str
    answers: list[tuple[float, float, int, str]] = field(default_factory=list)

    def start(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        client = Client(self.port, timeout=300)
        began = time.perf_counter()
        index = 0
        while not self._stop.is_set():
            index += 1
            sent = time.perf_counter()
            status, body = client.request("PUT", f"/v1/files{self.directory}/w{index:05d}",
                                          WRITER_BODY)
            took = time.perf_counter() - sent
            code = json.loads(body).get("code", "") if body.startswith(b"{") else ""
            self.answers.append((round(sent - began, 3), took, status, code))
            self._stop.wait(WRITER_PAUSE)

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        times = sorted(a[1] for a in self.answers)
        outcomes: dict[str, int] = {}
        for _, _, status, code in self.answers:
            key = f"{status} {code}".strip()
            outcomes[key] = outcomes.get(key, 0) + 1
        return {"directory": self.directory, "requests": len(times), "answers": outcomes,
                "median_ms": round(times[len(times) // 2] * 1000, 1) if times else None,
                "max_s": round(times[-1], 2) if times else None}


def observed(server: Server, method: str, path: str, inside: str, body: bytes | None = None
             ) -> dict:
    """Run one request with two writers at work (outside the tree and `inside` it)."""
    label = f"{method.lower()}{path.split('?')[0].replace('/', '-')}"
    writers = [Writer(server.port, f"/elsewhere/{label}"), Writer(server.port, inside)]
    for writer in writers:
        writer.start()
    time.sleep(0.3)  # both writing before the long request begins
    rss_before = sum(rss(pid) for pid in server.workers)
    started = time.perf_counter()
    status, answer = Client(server.port).request(
        method, path, body, {"Content-Type": "application/json"} if body else None)
    took = time.perf_counter() - started
    time.sleep(0.3)
    return {"status": status, "seconds": round(took, 2),
            "body": answer[:200].decode(errors="replace") if status >= 300 else "",
            "rss_before_mib": round(rss_before / 2**20, 1),
            "outside": writers[0].stop(), "inside": writers[1].stop()}


def start(name: str, args, work: Path) -> Server:
    database_url = None
    if name == "postgres":
        out = subprocess.run(["bash", "scripts/services.sh", "up", "pg"], cwd=ROOT, check=True,
                             env=_services_env(work), capture_output=True, text=True).stdout
        database_url = re.search(r"DATABASE_URL=(\S+)", out).group(1)
    return Server(work, args.code.resolve(), database_url=database_url, workers=None)


def _services_env(work: Path) -> dict[str, str]:
    work.chmod(0o755)  # PostgreSQL runs as its own user, below this directory
    port_file = work / "pg-port"
    if not port_file.exists():
        port_file.write_text(str(free_port()))
    return {**os.environ, "SVC_ROOT": str(work / "services"), "PGPORT": port_file.read_text()}


def grow(name: str, server: Server, args) -> dict:
    """Creates, then lookups before and after filling the table."""
    result: dict = {"workers": len(server.workers)}
    result["create"] = create_files(server, "/big", args.files)
    print(f"{name}: created {args.files:,} files: {result['create']}", flush=True)
    result["create_small"] = create_files(server, "/small", args.small_files)
    count = inode_count(server)
    result["lookups"] = {"inodes": count, **lookups(server, "/big", args.files, args.seconds)}
    print(f"{name}: lookups: {result['lookups']}", flush=True)
    if args.inodes > count:
        seconds = fill(server, "/fill", args.inodes - count)
        count = inode_count(server)
        print(f"{name}: filled to {count:,} inodes in {seconds} s", flush=True)
        result["lookups_filled"] = {"inodes": count,
                                    **lookups(server, "/big", args.files, args.seconds)}
        print(f"{name}: lookups: {result['lookups_filled']}", flush=True)
    return result


def trees(args) -> list[tuple[str, str]]:
    """(top, its key in the results) of the two trees, smaller first."""
    return [(top, f"{top[1:]}_{files + -(-files // PER_DIRECTORY)}")
            for top, files in (("/small", args.small_files), ("/big", args.files))]


def rename(name: str, server: Server, args) -> dict:
    result = {}
    for top, key in trees(args):
        result[f"rename_{key}"] = observed(server, "PATCH", f"/v1/files{top}", f"{top}/d000",
                                           json.dumps({"name": f"{top[1:]}-renamed"}).encode())
        print(f"{name}: rename {top}: {result[f'rename_{key}']}", flush=True)
    return result


def delete(name: str, server: Server, args) -> dict:
    result = {}
    for top, key in trees(args):
        result[f"delete_{key}"] = observed(server, "DELETE", f"/v1/files{top}-renamed/"
                                           "?recursive=true", f"{top}-renamed/d001")
        print(f"{name}: delete {top}: {result[f'delete_{key}']}", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--databases", default="sqlite,postgres")
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--small-files", type=int, default=20_000)
    parser.add_argument("--inodes", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--code", type=Path, default=ROOT)
    parser.add_argument("--work-dir", type=Path)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed (apt-get install wrk)")
    names = args.databases.split(",")
    works = {name: Path(tempfile.mkdtemp(prefix=f"callfs-scale-{name}-", dir=args.work_dir))
             for name in names}
    servers: dict[str, Server] = {}
    results: dict[str, dict] = {name: {} for name in names}
    try:
        # Every database's creates before any delete: mass deletes slow creation on this disk.
        for phase in (grow, rename, delete):
            for name in names:
                if name not in servers:
                    servers[name] = start(name, args, works[name])
                results[name].update(phase(name, servers[name], args))
    finally:
        for server in servers.values():
            server.stop()
        for name, work in works.items():
            if name == "postgres":
                subprocess.run(["bash", "scripts/services.sh", "down", "pg"], cwd=ROOT,
                               env=_services_env(work), capture_output=True)
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""Slow and stalled clients against one HTTP file server on loopback: does it hold them all?

`run()` seeds a file, then opens every connection at once and measures:

- **Slow downloads**: GET of the seeded file, read in `piece`-sized reads paced at `rate` bytes/s
  (sleeping between reads), sha256 checked. Time to first byte is the time from the common start
  to the response head: a server that queues connections behind others shows it here.
- **Slow uploads**: PUT of `size` bytes with Content-Length and `Expect: 100-continue`, written
  at `rate`; time to first byte is the time to the server's `100 Continue` (a server starts
  reading the body when it sends it). Each upload's bytes are distinct (a rotation of one random
  block) and are read back by GET once the load is over.
- **Stalled connections**, split evenly among the STALL_KINDS: nothing sent; half a request head;
  a full head announcing a body that never comes (a login form POST with a CSRF cookie, and a PUT
  of a file); a download of a larger file (`stall_file_size`) whose client stops reading after
  the head (more than the socket buffers hold: the server's send blocks). For each: how long
  after it was opened the server closed it
  (EOF or reset; for a client that reads nothing, the server's side of the connection leaving
  ESTABLISHED in /proc/net/tcp), waited for at most `stall_limit` seconds. Afterwards the stalled
  PUTs' paths must not exist (nothing stored).
- **Probes**: in a separate process (the generator's event loop would delay them), one small
  request at a time on a fresh connection: GET of a 4 KiB file, PUT of 4 KiB, GET of
  `health_path`, in turn, with `probe_gap` seconds between them, from just before the load starts
  until it is over. Median, p99, max and errors (non-2xx, refused, timed out).
- **RSS** of the server's worker processes (`rss_pids`), sampled every 0.25 s: each worker's
  baseline before the load, peak during it, and the growth per connection it held.

Stdlib only; HTTP/1.1 written by hand on asyncio streams; loopback addresses only. Every loop
is bounded in count and in time. The generator keeps its own CPU use low (32 KiB reads and
writes by default): it shares the machine with the server it measures.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import os
import resource
import secrets
import select
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

KiB = 1024
MiB = 1024 * KiB
STALL_KINDS = ("silent", "half_head", "login_body", "put_body", "stopped_reader")
SMALL = b"0123456789abcdef" * 256  # 4 KiB, the probes' file
CONTINUE_WAIT = 5.0  # an upload waits this long for 100 Continue, then sends anyway
IO_TIMEOUT = 30.0  # any single setup or verification request
PROBE_TIMEOUT = 10.0  # one probe
VERIFY_CONCURRENCY = 8
RSS_INTERVAL = 0.25
TCP_POLL_INTERVAL = 0.25
TCP_ESTABLISHED = 1


# --- HTTP on asyncio streams ----------------------------------------------------------------


@dataclass
class Head:
    status: int
    headers: dict[str, str]  # lower-case names

    @property
    def length(self) -> int | None:
        value = self.headers.get("content-length")
        return int(value) if value is not None else None


def parse_head(raw: bytes) -> Head:
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise ValueError(f"not an HTTP response: {raw[:80]!r}")
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return Head(int(parts[1]), headers)


def request_head(method: str, target: str, host: str, headers: dict[str, str],
                 length: int | None = None, extra: Iterable[str] = ()) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    lines += list(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def read_head(reader: asyncio.StreamReader) -> Head:
    """The next final response head (interim 1xx answers skipped)."""
    for _ in range(10):
        head = parse_head(await reader.readuntil(b"\r\n\r\n"))
        if not 100 <= head.status < 200:
            return head
    raise ValueError("more than 10 interim responses")


# --- the run's shared state -----------------------------------------------------------------


@dataclass
class Transfer:
    kind: str  # "download" or "upload"
    index: int
    target: str
    ttfb_s: float | None = None  # from the common start to the head (upload: 100 Continue)
    duration_s: float | None = None  # from the common start to the last byte
    status: int | None = None
    intact: bool = False
    error: str = ""


@dataclass
class Stalled:
    kind: str
    index: int
    target: str = ""
    opened_at: float = 0.0  # seconds after the common start
    closed_after_s: float | None = None  # from opening to the server's close; None: never seen
    status: int | None = None  # of a response the server sent before closing, if any
    error: str = ""


@dataclass
class Run:
    host: str
    port: int
    headers: dict[str, str]
    size: int
    rate: float
    piece: int
    block: memoryview  # `size` random bytes: the download file, rotated for each upload
    digest: bytes = b""  # the block's sha256
    t0: float = 0.0
    watched: dict[int, asyncio.Future] = field(default_factory=dict)  # stopped readers by port

    def now(self) -> float:
        return time.monotonic() - self.t0

    async def connect(self, limit: int, rcvbuf: int | None = None):
        if rcvbuf is None:
            return await asyncio.open_connection(self.host, self.port, limit=limit)
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # before connect
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(sock, (self.host, self.port))
        except BaseException:
            sock.close()
            raise
        return await asyncio.open_connection(sock=sock, limit=limit)

    async def request(self, method: str, target: str, body: bytes | Iterable[bytes] = b"",
                      length: int | None = None) -> tuple[Head, bytes]:
        """One request on a fresh connection at full speed (setup and verification); a body
        given in pieces needs its `length`."""
        reader, writer = await self.connect(limit=MiB)
        try:
            headers = {**self.headers, "Connection": "close"}
            if isinstance(body, bytes | bytearray | memoryview):
                body, length = [body], len(body)
            if method in ("PUT", "POST") and length is None:
                length = 0
            writer.write(request_head(method, target, self.host, headers, length))
            for piece in body:
                writer.write(piece)
                await writer.drain()
            head = await read_head(reader)
            if method == "HEAD" or head.status in (204, 304):
                return head, b""
            if head.length is not None:
                return head, await reader.readexactly(head.length)
            return head, await reader.read(-1)
        finally:
            writer.close()

    def upload_bytes(self, index: int) -> Iterable[memoryview]:
        """Upload `index`'s body in pieces: the block rotated by an offset of its own."""
        offset = (index + 1) * self.size // (index + 2) if self.size else 0
        for start, end in ((offset, self.size), (0, offset)):
            for position in range(start, end, self.piece):
                yield self.block[position:min(position + self.piece, end)]

    async def pace(self, started: float, moved: int) -> None:
        delay = started + moved / self.rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


# --- the clients ----------------------------------------------------------------------------


async def slow_download(run: Run, result: Transfer) -> None:
    reader, writer = await run.connect(limit=run.piece)
    try:
        writer.write(request_head("GET", result.target, run.host, run.headers))
        head = await read_head(reader)
        result.ttfb_s, result.status = run.now(), head.status
        if head.status != 200 or head.length is None:
            raise ValueError(f"status {head.status}, Content-Length {head.length}")
        digest, got, started = hashlib.sha256(), 0, time.monotonic()
        while got < head.length:  # each read brings >= 1 byte; the caller's deadline bounds it
            chunk = await reader.read(min(run.piece, head.length - got))
            if not chunk:
                raise ValueError(f"closed after {got} of {head.length} bytes")
            digest.update(chunk)
            got += len(chunk)
            await run.pace(started, got)
        result.duration_s = run.now()
        result.intact = got == run.size and digest.digest() == run.digest
        if not result.intact:
            result.error = "sha256 differs"
    finally:
        writer.close()


async def slow_upload(run: Run, result: Transfer) -> None:
    reader, writer = await run.connect(limit=64 * KiB)
    try:
        writer.write(request_head("PUT", result.target, run.host, run.headers, run.size,
                                  ["Expect: 100-continue"]))
        head = None
        try:
            head = parse_head(await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"),
                                                     CONTINUE_WAIT))
        except TimeoutError:
            pass  # no 100 Continue (yet): send anyway, as curl does after 1 s
        if head is not None:
            if head.status != 100:  # refused before the body
                result.status = head.status
                raise ValueError(f"status {head.status} before the body")
            result.ttfb_s = run.now()
        sent, started = 0, time.monotonic()
        for piece in run.upload_bytes(result.index):  # size / piece pieces
            writer.write(piece)
            await writer.drain()
            sent += len(piece)
            await run.pace(started, sent)
        raw = await reader.readuntil(b"\r\n\r\n")
        head = parse_head(raw)
        if head.status == 100:  # it came after CONTINUE_WAIT: still when the server started
            result.ttfb_s = run.now()
            head = await read_head(reader)
        result.status, result.duration_s = head.status, run.now()
        if not 200 <= head.status < 300:
            raise ValueError(f"status {head.status}")
    finally:
        writer.close()


async def verify_upload(run: Run, result: Transfer, gate: asyncio.Semaphore) -> None:
    async with gate:
        head, body = await asyncio.wait_for(run.request("GET", result.target), IO_TIMEOUT)
    expected = b"".join(run.upload_bytes(result.index))
    result.intact = head.status == 200 and body == expected
    if not result.intact:
        result.error = f"read back: status {head.status}, {len(body)} bytes, differ"


async def stalled(run: Run, result: Stalled, files: str, login_path: str,
                  limit: float) -> None:
    """Open, send the kind's bytes, then wait (up to `limit` s) for the server to close."""
    started = time.monotonic()
    result.opened_at = run.now()
    rcvbuf = 4 * KiB if result.kind == "stopped_reader" else None
    reader, writer = await run.connect(limit=8 * KiB, rcvbuf=rcvbuf)
    try:
        if result.kind == "half_head":
            head = request_head("GET", result.target, run.host, run.headers)
            writer.write(head[:len(head) // 2])
        elif result.kind == "login_body":
            writer.write(request_head(
                "POST", login_path, run.host, {}, 1000,
                [f"Cookie: csrftoken={secrets.token_hex(16)}",
                 "Content-Type: application/x-www-form-urlencoded"]))
        elif result.kind == "put_body":
            writer.write(request_head("PUT", result.target, run.host, run.headers, MiB))
        elif result.kind == "stopped_reader":
            writer.write(request_head("GET", result.target, run.host, run.headers))
        await writer.drain()
        remaining = limit - (time.monotonic() - started)
        if result.kind == "stopped_reader":
            result.status = (await asyncio.wait_for(read_head(reader), remaining)).status
            # From here on nothing is read: the transport stops reading once its buffer holds
            # 2 x limit bytes, and the small socket buffer then closes the TCP window.
            port = writer.get_extra_info("sockname")[1]
            closed = asyncio.get_running_loop().create_future()
            run.watched[port] = closed
            remaining = limit - (time.monotonic() - started)
            await asyncio.wait_for(closed, remaining)
        else:
            await asyncio.wait_for(_read_until_closed(reader, result), remaining)
        result.closed_after_s = time.monotonic() - started
    except TimeoutError:
        result.error = f"still open after {limit:g} s"
    except (OSError, asyncio.IncompleteReadError) as exc:  # a reset is a close too
        result.closed_after_s = time.monotonic() - started
        result.error = type(exc).__name__
    finally:
        writer.close()


async def _read_until_closed(reader: asyncio.StreamReader, result: Stalled) -> None:
    data = b""
    while chunk := await reader.read(8 * KiB):  # bounded by the caller's wait_for
        if len(data) < 256:
            data += chunk
    if data.startswith(b"HTTP/"):
        result.status = int(data.split(b" ", 2)[1])


def _server_side_states(port: int) -> dict[int, int] | None:
    """{client port: TCP state} of the server's side of each loopback connection to `port`."""
    states: dict[int, int] = {}
    found = False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as lines:
                found = True
                next(lines, None)
                for line in lines:
                    fields = line.split(None, 4)
                    local, remote = fields[1], fields[2]
                    if int(local.rsplit(":", 1)[1], 16) == port:
                        states[int(remote.rsplit(":", 1)[1], 16)] = int(fields[3], 16)
        except OSError:
            continue
    return states if found else None


async def watch_server_closes(run: Run, until: float) -> None:
    """Resolve each stopped reader's future once the server's side leaves ESTABLISHED (a
    client that reads nothing cannot see the server's FIN behind the unread data)."""
    while time.monotonic() < until:  # bounded in time
        pending = {port: f for port, f in run.watched.items() if not f.done()}
        if pending:
            states = _server_side_states(run.port)
            if states is None:
                return  # no /proc/net/tcp: the stopped readers report "still open"
            for port, future in pending.items():
                if states.get(port) != TCP_ESTABLISHED:
                    future.set_result(None)
        await asyncio.sleep(TCP_POLL_INTERVAL)


async def sample_rss(pids: list[int], peak: dict[int, int], until: float,
                     stop: asyncio.Event) -> None:
    while not stop.is_set() and time.monotonic() < until:
        for pid in pids:
            peak[pid] = max(peak[pid], rss_kib(pid))
        try:
            await asyncio.wait_for(stop.wait(), RSS_INTERVAL)
        except TimeoutError:
            pass


def rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


# --- the prober (its own process) -----------------------------------------------------------


def _blocking_request(host: str, port: int, data: bytes) -> int:
    """Send one request on a fresh connection; the status once the whole response is in (at
    most PROBE_TIMEOUT seconds)."""
    deadline = time.monotonic() + PROBE_TIMEOUT

    def receive() -> bytes:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no complete response in {PROBE_TIMEOUT:g} s")
        return sock.recv(64 * KiB)

    with socket.create_connection((host, port), timeout=PROBE_TIMEOUT) as sock:
        sock.sendall(data)
        buffer = b""
        while b"\r\n\r\n" not in buffer:
            chunk = receive()
            if not chunk:
                raise ConnectionError("closed before the response head")
            buffer += chunk
        raw, _, body = buffer.partition(b"\r\n\r\n")
        head = parse_head(raw)
        if head.length is None:
            while receive():
                pass
            return head.status
        got = len(body)
        while got < head.length:
            chunk = receive()
            if not chunk:
                raise ConnectionError("closed mid-body")
            got += len(chunk)
        return head.status


def _probe_main() -> None:
    """The prober process (`python slow_clients.py --probe`): its plan comes as one JSON line
    on stdin; it probes until stdin says "stop" (or closes) or the plan's limit passes, then
    prints [[kind, seconds, ok], ...] as JSON."""
    plan = json.loads(sys.stdin.readline())
    host, port, gap = plan["host"], plan["port"], plan["gap"]
    kinds = [(kind, [raw.encode("latin-1") for raw in variants])
             for kind, variants in plan["requests"]]
    samples: list[tuple[str, float, bool]] = []
    print("ready", flush=True)
    deadline = time.monotonic() + plan["limit"]
    for turn in itertools.count():  # bounded by the deadline
        kind, variants = kinds[turn % len(kinds)]
        data = variants[(turn // len(kinds)) % len(variants)]
        started = time.perf_counter()
        try:
            ok = 200 <= _blocking_request(host, port, data) < 300
        except (OSError, ValueError):
            ok = False
        samples.append((kind, time.perf_counter() - started, ok))
        if time.monotonic() > deadline or select.select([sys.stdin], [], [], gap)[0]:
            break  # "stop" (or EOF) on stdin
    print(json.dumps(samples), flush=True)


class Prober:
    """Small requests one at a time in a child process, from start() to stop(): in this
    process they would wait for the event loop of the load."""

    def __init__(self, run: Run, targets: dict[str, str], put_targets: list[str], gap: float,
                 limit: float):
        def raw(method: str, target: str, body: bytes | None = None) -> str:
            headers = {**run.headers, "Connection": "close"}
            length = len(body) if body is not None else None
            data = request_head(method, target, run.host, headers, length) + (body or b"")
            return data.decode("latin-1")

        self.plan = {"host": run.host, "port": run.port, "gap": gap, "limit": limit,
                     "requests": [["get", [raw("GET", targets["get"])]],
                                  ["put", [raw("PUT", target, SMALL) for target in put_targets]],
                                  ["health", [raw("GET", targets["health"])]]]}
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen([sys.executable, __file__, "--probe"],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.process.stdin.write(json.dumps(self.plan) + "\n")
        self.process.stdin.flush()
        ready, _, _ = select.select([self.process.stdout], [], [], 30)
        if not ready or self.process.stdout.readline().strip() != "ready":
            self.stop()
            raise RuntimeError("the probe process did not start")

    def stop(self) -> list[tuple[str, float, bool]]:
        if self.process is None:
            return []
        process, self.process = self.process, None
        try:
            out, _ = process.communicate("stop\n", timeout=PROBE_TIMEOUT + 10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            return []
        lines = out.strip().splitlines()
        return [tuple(sample) for sample in json.loads(lines[-1])] if lines else []


# --- summaries ------------------------------------------------------------------------------


def _spread(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"min": None, "median": None, "max": None}
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def summarize_transfers(results: list[Transfer]) -> dict:
    ttfb = [r.ttfb_s for r in results if r.ttfb_s is not None]
    return {
        "count": len(results), "intact": sum(r.intact for r in results),
        "ttfb_seen": len(ttfb), "ttfb_s": _spread(ttfb),
        "duration_s": _spread([r.duration_s for r in results if r.duration_s is not None]),
        "errors": [f"{r.kind} {r.index}: {r.error}" for r in results if r.error][:10],
    }


def summarize_stalled(results: list[Stalled]) -> dict:
    by_kind = {}
    for kind in STALL_KINDS:
        mine = [r for r in results if r.kind == kind]
        if not mine:
            continue
        closed = [r.closed_after_s for r in mine if r.closed_after_s is not None]
        statuses: dict[str, int] = {}
        for r in mine:
            statuses[str(r.status)] = statuses.get(str(r.status), 0) + 1
        by_kind[kind] = {"count": len(mine), "closed": len(closed),
                         "closed_after_s": _spread(closed), "statuses": statuses,
                         "errors": sorted({r.error for r in mine if r.error})}
    closed = [r.closed_after_s for r in results if r.closed_after_s is not None]
    return {"count": len(results), "closed": len(closed), "closed_after_s": _spread(closed),
            "by_kind": by_kind}


def summarize_probes(samples: list[tuple[str, float, bool]]) -> dict:
    def stats(chosen: list[tuple[str, float, bool]]) -> dict:
        ms = [seconds * 1000 for _, seconds, _ in chosen]
        if not ms:
            return {"count": 0, "errors": 0, "median_ms": None, "p99_ms": None, "max_ms": None}
        return {"count": len(ms), "errors": sum(not ok for _, _, ok in chosen),
                "median_ms": statistics.median(ms), "p99_ms": _percentile(ms, 0.99),
                "max_ms": max(ms)}

    report = stats(samples)
    report["by_kind"] = {kind: stats([s for s in samples if s[0] == kind])
                         for kind in ("get", "put", "health")}
    return report


def summarize_rss(baseline: dict[int, int], peak: dict[int, int], connections: int) -> dict:
    if not baseline:
        return {}
    growth = {pid: peak[pid] - baseline[pid] for pid in baseline}
    per_worker = connections / len(baseline)
    return {
        "workers": {str(pid): {"baseline_kib": baseline[pid], "peak_kib": peak[pid],
                               "growth_kib": growth[pid]} for pid in baseline},
        "peak_mib": max(peak.values()) / 1024,
        "growth_mib": max(growth.values()) / 1024,
        "connections_per_worker": per_worker,
        "growth_per_connection_kib": max(growth.values()) / per_worker if per_worker else None,
    }


# --- the run --------------------------------------------------------------------------------


async def _run(run: Run, files: str, root: str, *, downloads: int, uploads: int,
               stalled_count: int, stall_kinds: tuple[str, ...], stall_limit: float,
               stall_file_size: int, login_path: str, health_path: str, pids: list[int],
               probe_gap: float, make_directory: Callable[[str], None] | None) -> dict:
    if make_directory is not None:
        for directory in ("", "up/", "probe/", "stalled/"):
            make_directory(f"{root}/{directory}")
    download_target = f"{files}{root}/down.bin"
    stall_target = f"{files}{root}/stall.bin"
    seeds = [(download_target, [run.block], run.size),
             (f"{files}{root}/probe/get.bin", [SMALL], len(SMALL))]
    if "stopped_reader" in stall_kinds and stalled_count:
        # More than the socket buffers of both ends absorb (~3 MB on Linux's defaults): the
        # server's send of it blocks, so only the idle timeout can end it.
        repeats = -(-stall_file_size // run.size)
        seeds.append((stall_target, [run.block] * repeats, repeats * run.size))
    for target, body, length in seeds:
        head, _ = await asyncio.wait_for(run.request("PUT", target, body, length), IO_TIMEOUT)
        if not 200 <= head.status < 300:
            raise RuntimeError(f"seeding {target}: status {head.status}")

    transfer_limit = 3 * run.size / run.rate + 30
    overall = max(transfer_limit, stall_limit) + 30
    prober = Prober(run, {"get": f"{files}{root}/probe/get.bin", "health": health_path},
                    [f"{files}{root}/probe/put{i}.bin" for i in range(20)], probe_gap,
                    overall)
    baseline = {pid: rss_kib(pid) for pid in pids}
    peak = dict(baseline)
    stop_sampling = asyncio.Event()

    stalls = [Stalled(stall_kinds[i % len(stall_kinds)], i) for i in range(stalled_count)]
    for s in stalls:
        s.target = stall_target if s.kind == "stopped_reader" else \
            f"{files}{root}/stalled/{s.index}.bin"
    transfers = []
    for i in range(max(downloads, uploads)):  # interleaved: neither kind goes first
        if i < downloads:
            transfers.append(Transfer("download", i, download_target))
        if i < uploads:
            transfers.append(Transfer("upload", i, f"{files}{root}/up/{i}.bin"))

    async def bounded(coro, result, limit: float) -> None:
        try:
            await asyncio.wait_for(coro, limit)
        except TimeoutError:
            result.error = result.error or f"not done after {limit:g} s"
        except (OSError, ValueError, asyncio.IncompleteReadError,
                asyncio.LimitOverrunError) as exc:
            result.error = result.error or f"{type(exc).__name__}: {exc}"

    prober.start()
    run.t0 = time.monotonic()
    helpers = [asyncio.create_task(watch_server_closes(run, run.t0 + overall)),
               asyncio.create_task(sample_rss(pids, peak, run.t0 + overall, stop_sampling))]
    try:
        tasks = [bounded(stalled(run, s, files, login_path, stall_limit), s, stall_limit + 5)
                 for s in stalls]
        tasks += [bounded(slow_download(run, t) if t.kind == "download" else
                          slow_upload(run, t), t, transfer_limit) for t in transfers]
        await asyncio.gather(*tasks)
        elapsed = run.now()
    finally:
        stop_sampling.set()
        samples = prober.stop()
        for helper in helpers:
            helper.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)

    gate = asyncio.Semaphore(VERIFY_CONCURRENCY)
    sent = [t for t in transfers if t.kind == "upload" and not t.error]
    await asyncio.gather(*(bounded(verify_upload(run, t, gate), t, IO_TIMEOUT * 4)
                           for t in sent))
    stored = 0
    for s in stalls:
        if s.kind == "put_body":
            head, _ = await asyncio.wait_for(run.request("HEAD", s.target), IO_TIMEOUT)
            stored += head.status != 404

    connections = len(transfers) + len(stalls)
    return {
        "params": {"downloads": downloads, "uploads": uploads, "stalled": stalled_count,
                   "size": run.size, "rate": run.rate, "piece": run.piece,
                   "stall_limit_s": stall_limit, "ideal_transfer_s": run.size / run.rate},
        "elapsed_s": elapsed,
        "downloads": summarize_transfers([t for t in transfers if t.kind == "download"]),
        "uploads": summarize_transfers([t for t in transfers if t.kind == "upload"]),
        "stalled": summarize_stalled(stalls),
        "stalled_puts_stored": stored,
        "probes": summarize_probes(samples),
        "rss": summarize_rss(baseline, peak, connections),
    }


def _allow_descriptors(count: int) -> None:
    """Raise this process's open-file limit to `count` if the hard limit allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < count:
        wanted = count if hard == resource.RLIM_INFINITY else min(count, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def run(base_url: str, headers: dict[str, str] | None = None, files_prefix: str = "",
        *, root: str = "/slow", downloads: int = 256, uploads: int = 256, stalled: int = 200,
        size: int = 4 * MiB, rate: float = 128 * KiB, piece: int = 32 * KiB,
        stall_limit: float = 90.0, stall_kinds: Iterable[str] = STALL_KINDS,
        stall_file_size: int = 16 * MiB,
        login_path: str = "/admin/login/", health_path: str = "/health",
        rss_pids: Iterable[int] | Callable[[], Iterable[int]] = (), probe_gap: float = 0.02,
        make_directory: Callable[[str], None] | None = None) -> dict:
    """Slow downloads, slow uploads and stalled connections against the server at `base_url`
    (a loopback http:// URL), all at once, with probes and RSS samples meanwhile; returns the
    report (see the module docstring). Files live at `files_prefix + root + "/..."` (e.g.
    files_prefix="/v1/files" for CallFS, "" for a WebDAV server); `headers` go with every request
    but the stalled login POST; `make_directory(path)` is called for each directory the run
    writes into, for servers whose PUT does not create parents."""
    url = urlsplit(base_url)
    if url.scheme != "http" or url.hostname not in ("127.0.0.1", "::1", "localhost"):
        raise ValueError(f"loopback http:// URLs only, not {base_url}")
    kinds = tuple(stall_kinds)
    if unknown := set(kinds) - set(STALL_KINDS):
        raise ValueError(f"unknown stall kinds {unknown}")
    host = "127.0.0.1" if url.hostname == "localhost" else url.hostname
    state = Run(host=host, port=url.port or 80, headers=dict(headers or {}), size=size,
                rate=float(rate), piece=piece, block=memoryview(os.urandom(size)))
    state.digest = hashlib.sha256(state.block).digest()
    pids = list(rss_pids() if callable(rss_pids) else rss_pids)
    _allow_descriptors(downloads + uploads + stalled + 100)
    return asyncio.run(_run(
        state, files_prefix, "/" + root.strip("/"), downloads=downloads, uploads=uploads,
        stalled_count=stalled, stall_kinds=kinds, stall_limit=stall_limit,
        stall_file_size=stall_file_size,
        login_path=login_path, health_path=health_path, pids=pids, probe_gap=probe_gap,
        make_directory=make_directory))


if __name__ == "__main__" and sys.argv[1:] == ["--probe"]:
    _probe_main()

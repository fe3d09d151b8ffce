"""Races between requests on three real nodes (issue 21): readers during overwrites see one
whole version, old or new, never an error; concurrent creates of one path all get an answer."""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import requests

pytestmark = pytest.mark.cluster

WRITERS = 20
KiB = 1024
TIMEOUT = 60


@dataclass
class Versions:
    """Every body ever written to one path, by sha256."""

    bodies: dict[str, bytes] = field(default_factory=dict)

    def add(self, data: bytes) -> bytes:
        self.bodies[hashlib.sha256(data).hexdigest()] = data
        return data


@contextlib.contextmanager
def _sessions(cluster, count: int, *extra: tuple[str, str]) -> Iterator[list[requests.Session]]:
    """`count` sessions of alice's (one per thread: each keeps its own connections), closed at
    the end so that no idle connection holds up the nodes' shutdown."""
    sessions = [requests.Session() for _ in range(count)]
    for session in sessions:
        session.headers["Authorization"] = f"Bearer {cluster.alice_key}"
        session.headers.update(dict(extra))
    try:
        yield sessions
    finally:
        for session in sessions:
            session.close()


def _check_read(response: requests.Response, versions: Versions, ranged: tuple[int, int] | None
                ) -> str | None:
    """What is wrong with one read during the overwrites, or None: it must be 200 (206) with
    the bytes of exactly one version, which its ETag, X-CallFS-SHA256, Content-Length and
    Content-Range all describe."""
    if response.status_code != (206 if ranged else 200):
        return f"{response.status_code} {response.text[:200]}"
    digest = response.headers.get("X-CallFS-SHA256", "")
    body = versions.bodies.get(digest)
    if body is None:
        return f"unknown X-CallFS-SHA256 {digest!r}"
    if response.headers.get("ETag") != f'"{digest}"':
        return f"ETag {response.headers.get('ETag')} != X-CallFS-SHA256 {digest}"
    if response.headers.get("X-CallFS-Size") != str(len(body)):
        return f"X-CallFS-Size {response.headers.get('X-CallFS-Size')} != {len(body)}"
    expected = body
    if ranged:
        start, end = ranged
        expected = body[start:end + 1]
        wanted_range = f"bytes {start}-{end}/{len(body)}"
        if response.headers.get("Content-Range") != wanted_range:
            return f"Content-Range {response.headers.get('Content-Range')} != {wanted_range}"
    if response.headers.get("Content-Length") != str(len(expected)):
        return f"Content-Length {response.headers.get('Content-Length')} != {len(expected)}"
    if response.content != expected:
        return "the bytes are not those of the version the headers name"
    return None


def _overwrite_while_reading(cluster, path: str, versions: Versions, *, rounds: int,
                             size: int) -> tuple[int, list[str]]:
    """Rounds of WRITERS concurrent PUTs to `path` spread over the nodes, while one reader per
    node GETs it in a loop (whole, and ranges: small ones answered at once, large ones
    streamed). Returns (reads made, what went wrong)."""
    with _sessions(cluster, WRITERS) as writers, _sessions(cluster, 3) as readers:
        return _race(cluster, path, versions, writers, readers, rounds=rounds, size=size)


def _race(cluster, path: str, versions: Versions, writers: list[requests.Session],
          readers: list[requests.Session], *, rounds: int, size: int) -> tuple[int, list[str]]:
    problems: list[str] = []
    reads = [0]
    lock = threading.Lock()
    ranges = [None, (1000, 1999), (100, size - 100), None, (size - 5000, size - 1)]

    def writer(index: int, body: bytes) -> None:
        try:
            response = writers[index].put(cluster.url(index % 3, path), data=body,
                                          timeout=TIMEOUT)
            if response.status_code != 200:
                with lock:
                    problems.append(f"PUT: {response.status_code} {response.text[:200]}")
        except requests.RequestException as exc:
            with lock:
                problems.append(f"PUT: {exc!r}")

    def reader(node: int, done: threading.Event) -> None:
        count = 0
        while not done.is_set() or count < 3:
            ranged = ranges[count % len(ranges)]
            headers = {"Range": f"bytes={ranged[0]}-{ranged[1]}"} if ranged else {}
            count += 1
            try:
                response = readers[node].get(cluster.url(node, path), headers=headers,
                                             timeout=TIMEOUT)
                problem = _check_read(response, versions, ranged)
            except requests.RequestException as exc:
                problem = repr(exc)
            if problem:
                with lock:
                    problems.append(f"GET on node {node + 1} ({headers}): {problem}")
        with lock:
            reads[0] += count

    for _ in range(rounds):
        # Sizes differ by version, so a header of one version on the bytes of another shows.
        bodies = [versions.add(secrets.token_bytes(size + secrets.randbelow(4 * KiB)))
                  for _ in range(WRITERS)]
        done = threading.Event()
        reading = [threading.Thread(target=reader, args=(node, done))
                   for node in range(len(cluster.nodes))]
        writing = [threading.Thread(target=writer, args=(i, body))
                   for i, body in enumerate(bodies)]
        for thread in reading + writing:
            thread.start()
        for thread in writing:
            thread.join(TIMEOUT)
        done.set()
        for thread in reading:
            thread.join(TIMEOUT)
    return reads[0], problems


def _create(cluster, path: str, versions: Versions, node: int = 0) -> None:
    data = versions.add(secrets.token_bytes(256 * KiB))
    response = cluster.session().put(cluster.url(node, path), data=data, timeout=TIMEOUT)
    assert response.status_code == 201, response.text


def test_readers_on_every_node_see_one_whole_version_during_overwrites(cluster):
    """Issue 21 (1): the file lives on node 1's disk; node 1 reads it locally, nodes 2 and 3
    through node 1, while PUTs through all three replace its blob again and again."""
    versions = Versions()
    _create(cluster, "race/local.bin", versions)
    reads, problems = _overwrite_while_reading(cluster, "race/local.bin", versions, rounds=3,
                                               size=256 * KiB)
    assert not problems, f"{len(problems)} of {reads} reads: {problems[:5]}"


@pytest.mark.s3_live
def test_readers_see_one_whole_version_during_overwrites_of_an_s3_file(cluster):
    """The same on S3, which every node reads directly."""
    versions = Versions()
    _create(cluster, "race/s3.bin", versions)
    moved = cluster.session().patch(cluster.url(0, "race/s3.bin"), timeout=TIMEOUT, data=json.dumps(
        {"destination": f"{cluster.prefix}/race/s3.bin", "backend": "s3"}))
    if moved.status_code == 400 and "backend" in moved.text:
        pytest.skip("S3 is not configured (CALLFS_S3_BUCKET)")
    assert moved.status_code == 200, moved.text
    reads, problems = _overwrite_while_reading(cluster, "race/s3.bin", versions, rounds=2,
                                               size=256 * KiB)
    assert not problems, f"{len(problems)} of {reads} reads: {problems[:5]}"


def _create_concurrently(cluster, path: str, sessions: list[requests.Session], size: int
                         ) -> tuple[list[int], list[str], set[bytes]]:
    """WRITERS PUTs creating `path` at once, spread over the nodes: (statuses, failures to get
    any answer, bodies sent)."""
    bodies = [secrets.token_bytes(size) for _ in range(WRITERS)]
    statuses: list[int] = []
    failures: list[str] = []
    start = threading.Barrier(WRITERS)

    def writer(index: int) -> None:
        start.wait()
        try:
            response = sessions[index].put(cluster.url(index % 3, path), data=bodies[index],
                                           timeout=TIMEOUT)
            statuses.append(response.status_code)
        except requests.RequestException as exc:
            failures.append(repr(exc))

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    return statuses, failures, set(bodies)


@pytest.mark.parametrize("connection", ["keep-alive", "close"])
def test_concurrent_creates_of_one_path_all_get_an_answer(cluster, connection):
    """Issue 21 (2): every PUT gets an HTTP answer (no reset): one 201, the others 200 (they
    overwrote it) or 409 (they lost the create race, API.md §7.6 row 4); the file ends with
    one writer's bytes on every node. Keep-alive sessions are reused from round to round."""
    extra = [("Connection", "close")] if connection == "close" else []
    with _sessions(cluster, WRITERS, *extra) as sessions:
        started = time.monotonic()
        rounds = 0
        while rounds < 6 or (rounds < 30 and time.monotonic() - started < 4):
            path = f"create/{connection}-{rounds}.bin"
            size = (1 * KiB, 256 * KiB)[rounds % 2]  # small bodies are read first, large later
            statuses, failures, bodies = _create_concurrently(cluster, path, sessions, size)
            assert not failures, f"round {rounds}: {failures}"
            assert len(statuses) == WRITERS
            assert statuses.count(201) == 1, statuses
            assert set(statuses) <= {200, 201, 409}, statuses
            contents = {cluster.session().get(cluster.url(node, path), timeout=TIMEOUT).content
                        for node in range(len(cluster.nodes))}
            assert len(contents) == 1 and contents <= bodies
            rounds += 1

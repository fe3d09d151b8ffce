"""What a second copy costs: small PUTs and a 1 GiB upload with CALLFS_REPLICAS=2 against 1.

Two clusters of two nodes each (gunicorn with the project's gunicorn.conf.py, one worker per
node, PostgreSQL and Redis from scripts/services.sh, a database per cluster), one with
CALLFS_REPLICAS=1 and one with 2, both running through the whole benchmark; the rounds
alternate between them so that both see the same machine. Every write goes to the first node of
its cluster; with two copies it streams on to the second node while it arrives.

    python bench/replicas.py [--rounds 3] [--duration 10] [--big-mib 1024] [--json FILE]

Figures are ratios of one run: a load generator on the same 2 cores competes with the servers.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import statistics
import subprocess
import tempfile
from pathlib import Path

import psycopg
from listing import free_port
from run import KEY, CallFS, curl_transfer, wrk

ROOT = Path(__file__).resolve().parent.parent


def services(work: Path) -> tuple[str, str]:
    """PostgreSQL and Redis on free ports: (DATABASE_URL, REDIS_URL)."""
    work.chmod(0o755)  # PostgreSQL runs as its own user, below this directory
    env = {**os.environ, "SVC_ROOT": str(work / "services"), "PGPORT": str(free_port()),
           "REDIS_PORT": str(free_port())}
    out = subprocess.run(["bash", "scripts/services.sh", "up", "pg", "redis"], cwd=ROOT,
                         check=True, env=env, capture_output=True, text=True).stdout
    return (re.search(r"DATABASE_URL=(\S+)", out).group(1),
            re.search(r"REDIS_URL=(\S+)", out).group(1))


def stop_services(work: Path) -> None:
    subprocess.run(["bash", "scripts/services.sh", "down", "pg", "redis"], cwd=ROOT,
                   env={**os.environ, "SVC_ROOT": str(work / "services")},
                   capture_output=True, check=False)


def cluster(work: Path, replicas: int, database_url: str, redis_url: str) -> list[CallFS]:
    name = f"bench_replicas_{replicas}"
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {name}")
    common = {"REDIS_URL": redis_url, "CALLFS_REPLICAS": str(replicas),
              "CALLFS_INTERNAL_SECRET": "bench-internal-secret-0123456789",
              "CALLFS_PIN_WORKERS": "0", "CALLFS_REPAIR_INTERVAL": "0"}
    nodes = []
    for letter in "ab":
        port = free_port()
        nodes.append(CallFS(
            work / f"r{replicas}-{letter}", 1, None, f"{database_url.rsplit('/', 1)[0]}/{name}",
            name=f"replicas={replicas} node {letter}", port=port,
            extra_env={**common, "CALLFS_NODE_ID": f"r{replicas}-{letter}",
                       "CALLFS_NODE_URL": f"http://127.0.0.1:{port}"}))
    return nodes


def measure(node: CallFS, duration: int, big: Path, round_no: int) -> dict:
    put = wrk(node, "put.lua", duration, {"BENCH_PREFIX": f"{node.files_prefix}/small{round_no}/",
                                          "BENCH_RUN": str(round_no)})
    if put["errors"] or put["socket_errors"]:
        raise SystemExit(f"{node.name}: PUTs failed: {put}")
    rate, seconds = curl_transfer(node, "PUT", f"/big-{round_no}.bin", big)
    subprocess.run(["curl", "-s", "-o", "/dev/null", "-X", "DELETE", "-H",
                    f"Authorization: Bearer {KEY}", node.url(f"/big-{round_no}.bin")],
                   check=True)
    return {"put_ops": put["ops"], "put_p99_ms": put["p99_ms"], "put_errors": put["errors"],
            "big_upload_mb_s": rate, "big_upload_s": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--big-mib", type=int, default=1024)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="callfs-bench-replicas-"))
    big = work / "big.bin"
    with open(big, "wb") as out:
        for _ in range(args.big_mib):
            out.write(secrets.token_bytes(1024 * 1024))
    database_url, redis_url = services(work)
    clusters = {}
    try:
        clusters = {replicas: cluster(work, replicas, database_url, redis_url)
                    for replicas in (1, 2)}
        results: dict[int, list[dict]] = {1: [], 2: []}
        for round_no in range(args.rounds):
            for replicas, nodes in clusters.items():
                result = measure(nodes[0], args.duration, big, round_no)
                results[replicas].append(result)
                print(f"round {round_no + 1}, replicas={replicas}: {result}", flush=True)
        for replicas, nodes in clusters.items():  # the copies are where they should be
            copies = sum(1 for path in (nodes[1].work / "callfs-data" / "blobs").rglob("*")
                         if path.is_file() and path.stat().st_size)
            print(f"replicas={replicas}: {copies} blobs on the second node", flush=True)
            if (copies > 0) != (replicas > 1):
                raise SystemExit(f"replicas={replicas}: {copies} blobs on the second node")
        summary = {replicas: {key: statistics.median(r[key] for r in rows)
                              for key in rows[0]} for replicas, rows in results.items()}
        print(f"\n{'':24}{'replicas=1':>14}{'replicas=2':>14}{'ratio':>8}")
        for key, label in (("put_ops", "4 KiB PUT /s"), ("put_p99_ms", "4 KiB PUT p99 ms"),
                           ("big_upload_mb_s", f"{args.big_mib} MiB PUT MB/s")):
            one, two = summary[1][key], summary[2][key]
            print(f"{label:24}{one:14.1f}{two:14.1f}{two / one:8.2f}")
        if args.json:
            args.json.write_text(json.dumps({"rounds": results, "median": summary}, indent=1))
    finally:
        for nodes in clusters.values():
            for node in nodes:
                node.stop()
        stop_services(work)


if __name__ == "__main__":
    main()

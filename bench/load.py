"""Load test of /v1/search on loopback: N concurrent clients for S seconds, mixed modes.

    python -m bench.load --seconds 60 --clients 16      # writes bench/results/load.json

It ingests a small real corpus (Python's HTML docs when installed, else this repo's docs)
into an index of its own, serves the API with `esrag serve` on a free loopback port (one
uvicorn process), and reports throughput, p50/p95/p99 latency and the error rate. The
index is deleted afterwards. Traffic goes only to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
QUERIES = [
    "how do I read a file line by line", "list comprehension", "exception handling", "dictionary keys",
    "virtual environment", "string formatting", "decorators", "generators and yield", "unicode strings",
    "sorting a list", "regular expressions", "threading and locks", "command line arguments", "json",
]
MODES = ["bm25", "dense", "hybrid"]


def corpus_files(limit: int = 30) -> list[Path]:
    """Real documents to serve: Python's HTML docs if installed, else the repo's Markdown."""
    py = Path("/usr/share/doc/python3.11/html")
    files = sorted(py.rglob("*.html"))[:limit] if py.is_dir() else []
    return files or sorted(ROOT.rglob("*.md"))[:limit]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def served_api(env: dict[str, str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    """`esrag serve` on 127.0.0.1:port until the block ends."""
    proc = subprocess.Popen([sys.executable, "-m", "esrag.cli", "serve", "--host", "127.0.0.1", "--port",
                             str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the API did not start")
            time.sleep(0.3)
        yield proc
    finally:
        stop_process(proc, 15)


def stop_process(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM, then SIGKILL if ``proc`` has not exited after ``timeout`` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def percentile(sorted_ms: list[float], q: float) -> float:
    """The q-quantile (0..1) of sorted values, nearest-rank."""
    if not sorted_ms:
        return 0.0
    rank = max(0, min(len(sorted_ms) - 1, int(round(q * len(sorted_ms) + 0.5)) - 1))
    return round(sorted_ms[rank], 2)


async def _client(url: str, key: str, stop: float, n: int, out: list[tuple[str, float, int]]) -> None:
    async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": key}, timeout=30) as http:
        i = n
        while time.monotonic() < stop:
            mode = MODES[i % len(MODES)]
            body = {"query": QUERIES[i % len(QUERIES)], "mode": mode, "k": 10}
            start = time.perf_counter()
            try:
                status = (await http.post("/v1/search", json=body)).status_code
            except httpx.HTTPError:
                status = 0
            out.append((mode, (time.perf_counter() - start) * 1000, status))
            i += 1


def run_load(url: str, key: str, seconds: float, clients: int) -> dict[str, Any]:
    """Drive /v1/search with ``clients`` concurrent clients for ``seconds``; the figures."""
    out: list[tuple[str, float, int]] = []
    started = time.monotonic()

    async def main() -> None:
        stop = time.monotonic() + seconds
        await asyncio.gather(*(_client(url, key, stop, n, out) for n in range(clients)))

    asyncio.run(main())
    wall = time.monotonic() - started
    statuses = [s for *_, s in out]
    result: dict[str, Any] = {"clients": clients, "seconds": round(wall, 2), "requests": len(out),
                              "errors": sum(1 for s in statuses if s != 200),
                              "statuses": {str(s): statuses.count(s) for s in sorted(set(statuses))}}
    result["error_rate"] = round(result["errors"] / max(1, len(out)), 5)
    result["throughput_rps"] = round(len(out) / wall, 1)
    for mode in [None, *MODES]:
        ms = sorted(m for md, m, _ in out if mode is None or md == mode)
        stats = {"n": len(ms), "p50_ms": percentile(ms, 0.5), "p95_ms": percentile(ms, 0.95),
                 "p99_ms": percentile(ms, 0.99)}
        result["latency" if mode is None else f"latency_{mode}"] = stats
    return result


@contextmanager
def bench_index(files: list[Path]) -> Iterator[tuple[dict[str, str], str]]:
    """An index of its own holding ``files``; yields (env for child processes, alias)."""
    from esrag.es import make_client
    from esrag.settings import load_settings
    from ingest.pipeline import ingest_files

    alias = f"bench-load-{uuid.uuid4().hex[:8]}"
    settings = load_settings(index=alias)
    ingest_files(files, settings)
    env = {**os.environ, "ESRAG_INDEX": alias}
    try:
        yield env, alias
    finally:
        client = make_client(settings)
        for name in client.indices.get(index=f"{alias}*", expand_wildcards="all", allow_no_indices=True):
            client.indices.delete(index=name, ignore_unavailable=True)
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--files", type=int, default=30)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "load.json")
    args = parser.parse_args()
    from bench.machine import machine_info

    files = corpus_files(args.files)
    key = uuid.uuid4().hex
    with bench_index(files) as (env, alias):
        env["ESRAG_API_KEYS"] = json.dumps([key])
        port = free_port()
        with served_api(env, port):
            url = f"http://127.0.0.1:{port}"
            run_load(url, key, 3, 2)  # warm-up (models, caches), not reported
            result = run_load(url, key, args.seconds, args.clients)
    result.update({"corpus_files": len(files), "endpoint": "/v1/search", "api_processes": 1,
                   "machine": machine_info()})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2))


if __name__ == "__main__":
    main()

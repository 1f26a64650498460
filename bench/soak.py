"""Soak test: ingest jobs and queries together for minutes, recording the RSS of the API and
of a worker over time (bench/results/soak.json).

    python -m bench.soak --seconds 300

One `esrag serve` and one `esrag worker` (concurrency 1) run as child processes on
loopback. Every round a folder of files is rewritten (so each job re-embeds them) and
submitted through POST /v1/ingest while clients query /v1/search. Memory growth is the
mean RSS of the last third of the samples against the middle third (the first third is
warm-up: models and caches load then).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from statistics import mean

import httpx
import psutil

from bench.load import ROOT, bench_index, corpus_files, free_port, run_load, served_api, stop_process


def tree_rss_mb(pid: int) -> float:
    """RSS of a process and its children (a Celery worker forks its pool), in MiB."""
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return round(total / 2**20, 1)


def write_round(folder: Path, sources: list[Path], n: int) -> None:
    """Rewrite the job's files so that this round's job has real work to do."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, src in enumerate(sources):
        text = src.read_text(errors="replace")
        (folder / f"doc{i}.md").write_text(f"# Round {n} of {src.name}\n\n{text}")


def growth(values: list[float]) -> dict[str, float]:
    """Mean of the middle and last thirds and the difference."""
    third = max(1, len(values) // 3)
    mid, last = values[third:2 * third] or values, values[-third:]
    return {"middle_mean_mb": round(mean(mid), 1), "last_mean_mb": round(mean(last), 1),
            "growth_mb": round(mean(last) - mean(mid), 1),
            "growth_pct": round(100 * (mean(last) - mean(mid)) / max(1.0, mean(mid)), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--slice", type=float, default=10, help="seconds per query slice (one RSS sample)")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--job-files", type=int, default=8)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "soak.json")
    args = parser.parse_args()
    from bench.machine import machine_info

    key = uuid.uuid4().hex
    workdir = Path(f"/tmp/esrag-soak-{uuid.uuid4().hex[:8]}")
    jobs_dir = workdir / "jobs"
    sources = sorted(ROOT.rglob("*.md"))[: args.job_files]
    samples: list[dict[str, float]] = []
    job_ids: list[str] = []
    with bench_index(corpus_files(30)) as (env, alias):
        queue = f"soak-{uuid.uuid4().hex[:6]}"
        env.update({"ESRAG_API_KEYS": json.dumps([key]), "ESRAG_ALLOWED_ROOTS": json.dumps([str(workdir)]),
                    "ESRAG_QUEUE": queue})
        worker = subprocess.Popen([sys.executable, "-m", "esrag.cli", "worker", "--concurrency", "1",
                                   "--loglevel", "WARNING"], env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        port = free_port()
        try:
            with served_api(env, port) as api:
                url = f"http://127.0.0.1:{port}"
                started = time.monotonic()
                n = 0
                while time.monotonic() - started < args.seconds:
                    write_round(jobs_dir, sources, n)
                    r = httpx.post(f"{url}/v1/ingest", json={"paths": [str(jobs_dir)]},
                                   headers={"X-API-Key": key}, timeout=30)
                    job_ids.append(r.json().get("job", f"HTTP {r.status_code}"))
                    figures = run_load(url, key, args.slice, args.clients)
                    samples.append({"t": round(time.monotonic() - started, 1),
                                    "api_rss_mb": tree_rss_mb(api.pid),
                                    "worker_rss_mb": tree_rss_mb(worker.pid), "requests": figures["requests"],
                                    "errors": figures["errors"], "p95_ms": figures["latency"]["p95_ms"]})
                    print(json.dumps(samples[-1]), flush=True)
                    n += 1
                jobs = [httpx.get(f"{url}/v1/jobs/{j}", headers={"X-API-Key": key}).json() for j in job_ids
                        if not j.startswith("HTTP")]
        finally:
            stop_process(worker, 30)
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)
    result = {
        "seconds": args.seconds, "clients": args.clients, "job_files": len(sources), "rounds": len(samples),
        "jobs_submitted": len(job_ids), "jobs_by_status": {s: sum(1 for j in jobs if j.get("status") == s)
                                                           for s in {j.get("status") for j in jobs}},
        "requests": sum(s["requests"] for s in samples), "errors": sum(s["errors"] for s in samples),
        "api_rss": growth([s["api_rss_mb"] for s in samples]),
        "worker_rss": growth([s["worker_rss_mb"] for s in samples]),
        "samples": samples, "machine": machine_info(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("samples", "machine")}, indent=2))


if __name__ == "__main__":
    main()

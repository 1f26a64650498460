"""Job throughput on 2 worker processes vs. the single-process ingest of the same corpus.

    .venv/bin/python -m bench.workers [--files 120] [--out bench/results/workers.json]

Both runs ingest the same real HTML files (Debian's python3.11-doc) into fresh indices,
side by side in one run. Workers are warmed up (model loaded) before the timed job. The
per-task overhead is measured with a job of tiny unchanged files (all skipped) against
the same work done in-process.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from bench.machine import machine_info
from esrag.embedder import get_embedder
from esrag.es import make_client
from esrag.settings import load_settings
from ingest.pipeline import ingest_files
from workers.jobstore import FINAL_STATES, JobStore
from workers.submit import submit_files

DOCS = Path("/usr/share/doc/python3.11/html/library")


def _wait(store: JobStore, job_id: str, timeout: float = 3600) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = store.get(job_id)
        if job and job.status in FINAL_STATES:
            return job.to_dict()
        time.sleep(0.05)
    raise TimeoutError(job_id)


def _start_workers(n: int, env: dict[str, str]) -> list[subprocess.Popen]:
    return [
        subprocess.Popen([sys.executable, "-m", "esrag.cli", "worker", "--loglevel", "WARNING"], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        for _ in range(n)
    ]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=120)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--overhead-tasks", type=int, default=40)
    ap.add_argument("--task-files", type=int, default=1, help="files per task (small tasks balance workers)")
    ap.add_argument("--out", default="bench/results/workers.json")
    args = ap.parse_args()

    tag = uuid.uuid4().hex[:6]
    queue = f"bench-{tag}"
    files = sorted(DOCS.glob("*.html"))[: args.files]
    threads = max(1, len(os.sched_getaffinity(0)) // args.workers)
    base = load_settings(queue=queue, task_max_files=args.task_files)
    client = make_client(base)
    store = JobStore.from_url(base.redis_url)
    env = {**os.environ, "ESRAG_QUEUE": queue, "ESRAG_TORCH_THREADS": str(threads)}
    procs = _start_workers(args.workers, env)
    indices = [f"bench-sync-{tag}", f"bench-job-{tag}", f"bench-warm-{tag}", f"bench-oh-{tag}"]
    try:
        # warm-up: model loaded in every worker before timing
        warm_dir = Path(f"/tmp/esrag-bench-{tag}")
        warm_dir.mkdir()
        warm = []
        for i in range(args.workers * 2):
            p = warm_dir / f"warm{i}.txt"
            p.write_text(f"warm-up document number {i} for the worker benchmark")
            warm.append(p)
        _wait(store, submit_files(warm, base.model_copy(update={"index": indices[2], "task_max_files": 1})))

        sync_settings = base.model_copy(update={"index": indices[0]})
        get_embedder(sync_settings)  # load outside the timing
        t0 = time.perf_counter()
        sync = ingest_files(files, sync_settings)
        sync_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        job = _wait(store, submit_files(files, base.model_copy(update={"index": indices[1]})))
        job_s = time.perf_counter() - t0

        # per-task overhead: tiny files, already indexed, so every task is a skip
        tiny = warm[:1]
        oh_settings = base.model_copy(update={"index": indices[3], "task_max_files": 1})
        ingest_files(tiny, oh_settings)
        t0 = time.perf_counter()
        for _ in range(10):
            ingest_files(tiny, oh_settings)
        inproc_ms = (time.perf_counter() - t0) / 10 * 1000
        t0 = time.perf_counter()
        _wait(store, submit_files(tiny * args.overhead_tasks, oh_settings))
        per_task_ms = (time.perf_counter() - t0) / args.overhead_tasks * 1000 * args.workers
        result = {
            "benchmark": "workers",
            "machine": machine_info(),
            "corpus": f"{len(files)} files of {DOCS}",
            "workers": args.workers,
            "torch_threads_per_worker": threads,
            "task_max_files": base.task_max_files,
            "sync": {"seconds": round(sync_s, 2), "chunks": sync.chunks,
                     "chunks_per_s": round(sync.chunks / sync_s, 2)},
            "job": {"seconds": round(job_s, 2), "chunks": job["chunks"], "status": job["status"],
                    "tasks": job["tasks_total"], "chunks_per_s": round(job["chunks"] / job_s, 2)},
            "throughput_ratio_job_over_sync": round((job["chunks"] / job_s) / (sync.chunks / sync_s), 3),
            "per_task_overhead_ms": round(per_task_ms - inproc_ms, 1),
            "per_task_wall_ms_skip_only": round(per_task_ms, 1),
            "inprocess_skip_ms": round(inproc_ms, 1),
        }
    finally:
        for p in procs:
            os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            p.wait(timeout=60)
        for name in indices:
            for concrete in client.indices.get(index=f"{name}*", allow_no_indices=True):
                client.indices.delete(index=concrete)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

"""What `POST /v1/ingest` costs the API process for one folder of N small files, beside the
folder walk and task planning it did before a worker took that over (workers/expand.py).

    python -m bench.submit --files 20000

The job is submitted to a queue of its own that no worker consumes and removed afterwards;
results go to bench/results/submit.json with the machine's facts.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.machine import machine_info


def _measure(fn: Callable[[], Any]) -> tuple[Any, dict[str, float]]:
    """Run ``fn`` twice: timed, then under tracemalloc (which slows it) for its peak memory."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    figures = {"wall_s": round(time.perf_counter() - wall, 4), "cpu_s": round(time.process_time() - cpu, 4)}
    tracemalloc.start()
    again = fn()
    figures["peak_python_mib"] = round(tracemalloc.get_traced_memory()[1] / 2**20, 2)
    tracemalloc.stop()
    return [out, again], figures


def main(argv: list[str] | None = None) -> None:
    from fastapi.testclient import TestClient

    from esrag.settings import load_settings
    from ingest.sources import expand_paths
    from query.api.app import create_app
    from workers.jobstore import JobStore
    from workers.submit import plan_tasks

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20000)
    parser.add_argument("--out", type=Path, default=Path("bench/results/submit.json"))
    args = parser.parse_args(argv)
    machine = machine_info()
    root = Path(tempfile.mkdtemp(prefix="esrag-submit-"))
    for i in range(args.files):
        folder = root / f"d{i // 500:04d}"
        folder.mkdir(exist_ok=True)
        (folder / f"f{i % 500:04d}.txt").write_text("x")
    key = uuid.uuid4().hex
    settings = load_settings().model_copy(update={
        "allowed_roots": [root], "queue": f"bench-submit-{uuid.uuid4().hex[:8]}", "api_keys": [key],
        "ingest_max_files": 10 * args.files})
    store = JobStore.from_url(settings.redis_url)
    jobs: list[str] = []
    try:
        with TestClient(create_app(settings)) as client:
            post = lambda paths: client.post("/v1/ingest", json={"paths": paths},  # noqa: E731
                                             headers={"X-API-Key": key})
            jobs.append(post(["d0000/f0000.txt"]).json()["job"])  # warm the route
            responses, api = _measure(lambda: post(["."]))
            jobs += [r.json()["job"] for r in responses]
            response = responses[0]
        tasks, before = _measure(lambda: plan_tasks(expand_paths([str(root)], settings),
                                                    settings.task_max_files, settings.task_max_bytes))
    finally:
        for job_id in jobs:
            store.delete(job_id)
        store.r.delete(settings.queue)
        shutil.rmtree(root, ignore_errors=True)
    result = {
        "machine": machine, "files": args.files, "post_status": response.status_code,
        "post_v1_ingest": api, "walk_and_plan_in_process": {**before, "tasks": len(tasks[0])},
        "ratio_wall": round(before["wall_s"] / api["wall_s"], 1),
        "note": "post: what the API does now (checks the path, records the job, enqueues the "
                "expansion); walk_and_plan: the part of the old request now done on a worker "
                "(the old request also checked each file's real path and stored every path in Redis)",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

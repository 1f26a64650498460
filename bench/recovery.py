"""Time for a job to recover a worker killed with `kill -9`, with default settings.

    .venv/bin/python -m bench.recovery [--files 24] [--out bench/results/recovery.json]

Two `esrag worker`s with default settings (lease 30 s, visibility timeout an hour) on a
queue of their own; a job of real HTML files (Debian's python3.11-doc), one per task.
Once some tasks are done, the worker holding a task is killed outright. Recorded: when
the task first showed `stalled`, when it started again on the other worker, and the job's
end state against an in-process ingest of the same files.
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
from esrag.es import make_client
from esrag.settings import load_settings
from ingest.pipeline import ingest_files
from workers.jobstore import FINAL_STATES, JobStore
from workers.submit import submit_files

DOCS = Path("/usr/share/doc/python3.11/html/library")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=24)
    ap.add_argument("--out", default="bench/results/recovery.json")
    args = ap.parse_args()

    tag = uuid.uuid4().hex[:6]
    queue = f"bench-{tag}"
    files = sorted(DOCS.glob("*.html"))[: args.files]
    base = load_settings(queue=queue, task_max_files=1, index=f"bench-recovery-{tag}")
    client = make_client(base)
    store = JobStore.from_url(base.redis_url)
    env = {**os.environ, "ESRAG_QUEUE": queue, "ESRAG_TORCH_THREADS": "1"}
    for name in ("ESRAG_TASK_LEASE_SECONDS", "ESRAG_TASK_VISIBILITY_TIMEOUT"):
        env.pop(name, None)
    procs = {
        name: subprocess.Popen([sys.executable, "-m", "esrag.cli", "worker", "--loglevel", "WARNING",
                                "--name", f"{name}@%h"], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
        for name in ("w0", "w1")
    }
    indices = [base.index, f"bench-recovery-sync-{tag}"]
    try:
        sync = ingest_files(files, base.model_copy(update={"index": indices[1]}))
        job_id = submit_files(files, base)
        held = victim = None
        while held is None:
            tasks = store.tasks(job_id)
            done = sum(1 for r in tasks.values() if r["state"] == "done")
            running = [(t, r["worker"].split(":", 1)[-1].split("@")[0]) for t, r in tasks.items()
                       if r["state"] == "running"]
            if done >= 2 and running:
                held, victim = running[0]
            time.sleep(0.05)
        os.killpg(procs[victim].pid, signal.SIGKILL)
        procs[victim].wait()
        killed = time.monotonic()
        stalled_s = rerun_s = None
        while True:
            if stalled_s is None and store.task_states(job_id)[held] == "stalled":
                stalled_s = time.monotonic() - killed
            rec = store.task(job_id, held)
            if rec["attempts"] >= 2:
                rerun_s = time.monotonic() - killed
                break
            time.sleep(0.05)
        while (job := store.get(job_id)).status not in FINAL_STATES:
            time.sleep(0.2)
        rec = store.task(job_id, held)
        result = {
            "benchmark": "recovery",
            "machine": machine_info(),
            "corpus": f"{len(files)} files of {DOCS}, one per task",
            "settings": {"task_lease_seconds": base.task_lease_seconds,
                         "task_visibility_timeout": base.task_visibility_timeout},
            "killed_worker": victim,
            "task": held,
            "seconds_kill_to_stalled_shown": round(stalled_s, 1) if stalled_s is not None else None,
            "seconds_kill_to_rerun_started": round(rerun_s, 1),
            "task_attempts": rec["attempts"],
            "task_rerun_on": rec["worker"].split(":", 1)[-1],
            "job": {"status": job.status, "tasks_done": job.tasks_done, "chunks": job.counters["chunks"]},
            "in_process_chunks": sync.chunks,
        }
    finally:
        for p in procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        for name in indices:
            for concrete in client.indices.get(index=f"{name}*", allow_no_indices=True):
                client.indices.delete(index=concrete)
        client.close()
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

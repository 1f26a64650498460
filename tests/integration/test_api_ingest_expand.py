"""POST /v1/ingest answers at once and a worker expands the folders: real HTTP (uvicorn),
a real Redis of the test's own, real `esrag worker` processes and the real Elasticsearch.

- the POST answers before expansion: the job is `expanding` with 0 files, and files put in
  the folder after the POST are the ones ingested (exact chunk counts); with sync the
  worker deletes the chunks of files gone from the folder;
- past ESRAG_INGEST_MAX_FILES the job fails with one line and nothing is indexed; a path
  removed between the submit and the expansion fails alone;
- an expansion that dies half-way through publishing, then is delivered again (by the lease
  reaper and as a duplicate message), plans and publishes each file task exactly once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from dashboard_server import free_port, serve
from elasticsearch import Elasticsearch
from elasticsearch.helpers import scan

from esrag import localredis
from esrag.keys import KeyFile
from esrag.settings import Settings
from server.app import create_app
from workers.jobstore import FINAL_STATES, Job, JobStore

LEASE = 6  # seconds: a dead expansion's lease expires quickly


@dataclass
class Stack:
    settings: Settings  # what the API serves with
    env: dict[str, str]  # what its workers run with
    keys: dict[str, str]
    root: Path
    outside: Path
    logs: Path
    workers: list[subprocess.Popen]

    def start_worker(self, loglevel: str = "WARNING") -> Path:
        path = self.logs / f"worker-{len(self.workers)}.log"
        log = open(path, "wb")  # noqa: SIM115
        self.workers.append(subprocess.Popen(
            [sys.executable, "-m", "esrag.cli", "worker", "--loglevel", loglevel],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        log.close()
        return path

    def store(self) -> JobStore:
        return JobStore.from_url(self.settings.redis_url)

    def wait(self, job_id: str, timeout: float = 240) -> Job:
        store = self.store()
        deadline = time.monotonic() + timeout
        while (job := store.get(job_id)) is None or job.status not in FINAL_STATES:
            if time.monotonic() > deadline:
                logs = "\n".join(p.read_text()[-2000:] for p in self.logs.glob("worker-*.log"))
                raise AssertionError(f"job {job_id} not finished: {job}\n{logs}")
            time.sleep(0.3)
        return job


@pytest.fixture()
def stack(settings: Settings, tmp_path: Path) -> Iterator[Stack]:
    port = free_port()
    redis_dir = tmp_path / "redis"
    redis_dir.mkdir()
    redis_proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                                   "--dir", str(redis_dir), "--save", ""],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    keyfile = KeyFile(tmp_path / "keys.json")
    keys = {"ingest": keyfile.add("docs-ingest", "ingest", {}, f"{settings.index}*"),
            "read": keyfile.add("docs-read", "read", {}, None)}
    queue = f"test-{uuid.uuid4().hex[:8]}"
    served = settings.model_copy(update={"api_key_file": keyfile.path, "allowed_roots": [root],
                                          "redis_url": url, "queue": queue})
    env = {**os.environ, "ESRAG_REDIS_URL": url, "ESRAG_QUEUE": queue, "ESRAG_INDEX": settings.index,
           "ESRAG_TORCH_THREADS": "1", "ESRAG_TASK_LEASE_SECONDS": str(LEASE)}
    st = Stack(served, env, keys, root, outside, tmp_path, [])
    try:
        for _ in range(100):
            if localredis.ping(url):
                break
            time.sleep(0.1)
        yield st
    finally:
        for proc in st.workers:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        redis_proc.terminate()
        redis_proc.wait(timeout=20)


def _sources(es: Elasticsearch, alias: str) -> list[str]:
    if not es.indices.exists_alias(name=alias):
        return []
    es.indices.refresh(index=alias)
    return sorted(h["_source"]["source"] for h in scan(es, index=alias, _source=["source"],
                                                        query={"query": {"match_all": {}}}))


def _post(base: str, key: str, body: dict) -> httpx.Response:
    return httpx.post(f"{base}/v1/ingest", json=body, headers={"X-API-Key": key}, timeout=30)


@pytest.mark.timeout(300)
def test_post_answers_before_expansion_and_a_worker_expands(es: Elasticsearch, stack: Stack) -> None:
    docs = stack.root / "docs"
    docs.mkdir()
    (stack.root / "gone").mkdir()
    (stack.outside / "secret.txt").write_text("The payroll secret.")
    with serve(create_app(stack.settings)) as base:
        denied = _post(base, stack.keys["read"], {"paths": ["docs"]})
        assert (denied.status_code, denied.json()) == (403, {
            "detail": "the API key 'docs-read' (read) may not use this route; it needs the ingest role"})
        r = _post(base, stack.keys["ingest"], {"paths": ["docs", "gone"], "index": stack.settings.index})
        assert r.status_code == 202, r.text
        job_id = r.json()["job"]
        assert r.json() == {"job": job_id, "status": "expanding", "files": 0, "deleted": 0,
                            "deleted_sources": []}
        view = httpx.get(f"{base}/v1/jobs/{job_id}", headers={"X-API-Key": stack.keys["ingest"]},
                         timeout=30).json()
        assert (view["status"], view["files_total"], view["tasks_total"], view["tasks_done"]) == (
            "expanding", 0, 1, 0)
    # the folder is filled only now: what gets ingested is what a worker finds when it expands
    for i, word in enumerate(["alpha", "beta", "gamma"]):
        (docs / f"{word}.txt").write_text(f"The {word} note number {i}.")
    os.symlink(stack.outside / "secret.txt", docs / "link.txt")
    (stack.root / "gone").rmdir()
    stack.start_worker()
    job = stack.wait(job_id)
    assert job.status == "completed_with_failures"
    link, gone = str(docs / "link.txt"), str(stack.root / "gone")
    assert job.failures == [
        {"source": link, "error": f"{link} resolves to {stack.outside / 'secret.txt'}, outside the allowed "
                                  "roots; not read"},
        {"source": gone, "error": f"{gone} no longer exists (removed after the job was submitted); not read"}]
    assert (job.files_total, job.tasks_total, job.tasks_done, job.tasks_failed) == (4, 2, 2, 0)
    assert (job.counters["documents"], job.counters["chunks"], job.counters["indexed"]) == (3, 3, 3)
    assert _sources(es, stack.settings.index) == [str(docs / f"{w}.txt") for w in ("alpha", "beta", "gamma")]
    # with sync the worker also deletes the chunks of files gone from the folder
    (docs / "alpha.txt").unlink()
    with serve(create_app(stack.settings)) as base:
        r = _post(base, stack.keys["ingest"],
                  {"paths": ["docs"], "index": stack.settings.index, "sync": True})
    assert r.status_code == 202, r.text
    synced = stack.wait(r.json()["job"])
    assert (synced.counters["deleted"], synced.counters["skipped_unchanged"], synced.files_total) == (1, 2, 3)
    assert _sources(es, stack.settings.index) == [str(docs / f"{w}.txt") for w in ("beta", "gamma")]


@pytest.mark.timeout(240)
def test_past_the_cap_the_job_fails_with_one_line_and_nothing_is_indexed(es: Elasticsearch,
                                                                         stack: Stack) -> None:
    for i in range(3):
        (stack.root / f"n{i}.txt").write_text(f"note {i}")
    capped = stack.settings.model_copy(update={"ingest_max_files": 2})
    with serve(create_app(capped)) as base:
        r = _post(base, stack.keys["ingest"], {"paths": ["."], "index": stack.settings.index})
        assert (r.status_code, r.json()["status"]) == (202, "expanding"), r.text
        stack.start_worker()
        job = stack.wait(r.json()["job"])
        shown = httpx.get(f"{base}/v1/jobs/{job.id}", headers={"X-API-Key": stack.keys["ingest"]},
                          timeout=30).json()
    line = "the paths expand to 3 files, over ESRAG_INGEST_MAX_FILES (2); nothing was ingested; submit fewer"
    assert (job.status, job.error, job.failures) == ("failed", line, [])
    assert (shown["status"], shown["error"]) == ("failed", line)
    assert (job.files_total, job.tasks_total, job.tasks_failed) == (0, 1, 1)
    assert list(stack.store().tasks(job.id)) == [f"{job.id}-expand"]
    assert _sources(es, stack.settings.index) == []
    cli = subprocess.run([sys.executable, "-m", "esrag.cli", "job", job.id], env=stack.env,
                         capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout.splitlines()[:2] == [f"job {job.id}: failed (100.0%) index={stack.settings.index}",
                                           f"  error: {line}"]


class Died(Exception):
    """The expansion's process dying half-way through publishing."""


@pytest.mark.timeout(300)
def test_redelivered_expansion_publishes_each_task_once(es: Elasticsearch, stack: Stack) -> None:
    from workers.app import make_celery
    from workers.expand import run_expansion
    from workers.leases import Leases
    from workers.submit import enqueue

    for i in range(4):
        (stack.root / f"f{i}.txt").write_text(f"file {i} of the redelivery test")
    one_per_task = stack.settings.model_copy(update={"task_max_files": 1})
    with serve(create_app(one_per_task)) as base:
        r = _post(base, stack.keys["ingest"], {"paths": ["."], "index": stack.settings.index})
    assert r.status_code == 202, r.text
    job_id, expand = r.json()["job"], f"{r.json()['job']}-expand"
    store = stack.store()
    # a first run takes the expansion's lease, plans, publishes two of the four tasks, and dies
    leases = Leases(store, stack.settings.queue)
    verdict, token = leases.acquire(job_id, expand, "host:victim@host", LEASE)
    assert verdict == "ok"
    app = make_celery(stack.settings)
    sent: list[str] = []

    def dying(tid: str, files: list[str]) -> None:
        if len(sent) == 2:
            raise Died
        enqueue(app, job_id, tid, files, stack.settings)
        sent.append(tid)

    try:
        with pytest.raises(Died):
            run_expansion(store, stack.settings, job_id, expand, [str(stack.root)], dying)
        planned = sorted(t for t in store.tasks(job_id) if t != expand)
        assert planned == [f"{job_id}-{i:05d}" for i in range(4)] and sent == planned[:2]
        assert store.get(job_id).status == "queued"
        # the dead run's lease lapses; the POST's own message is still queued: both deliveries
        # (that one, and the reaper's) reach the worker
        log = stack.start_worker(loglevel="INFO")  # INFO logs each message the worker receives
        job = stack.wait(job_id)
        assert (job.status, job.failures) == ("completed", [])
        # delivered once more after the end: counted already, nothing is planned or published
        enqueue(app, job_id, expand, [str(stack.root)], stack.settings)
        _drain(store, stack.settings.queue)
    finally:
        app.close()
    received = log.read_text()
    # each file task reached the worker once: the first two from the dead run, the rest from
    # the expansion's second run; the expansion came three times (the POST's message, the
    # reaper's, the late duplicate) and ran to its end once
    assert [received.count(f"esrag.ingest_batch[{t}] received") for t in planned] == [1, 1, 1, 1]
    assert received.count(f"esrag.expand_job[{expand}] received") == 3
    assert received.count(f"esrag.expand_job[{expand}] succeeded") == 3
    tasks = store.tasks(job_id)
    assert sorted(tasks) == [*planned, expand]
    assert [tasks[t]["attempts"] for t in planned] == [1, 1, 1, 1]
    assert tasks[expand]["state"] == "done"
    job = store.get(job_id)
    assert (job.tasks_total, job.tasks_done, job.files_total) == (5, 5, 4)
    assert (job.counters["documents"], job.counters["chunks"]) == (4, 4)
    assert _sources(es, stack.settings.index) == [str(stack.root / f"f{i}.txt") for i in range(4)]


def _drain(store: JobStore, queue: str, timeout: float = 60) -> None:
    """Wait until the broker holds no message of ``queue``, delivered or not."""
    deadline = time.monotonic() + timeout
    idle = 0
    while time.monotonic() < deadline:
        lists = [k for k in store.r.keys(f"{queue}*") if store.r.type(k) == "list"]
        idle = idle + 1 if sum(store.r.llen(k) for k in lists) == 0 and not store.r.hlen("unacked") else 0
        if idle == 3:  # three looks in a row, a second apart
            return
        time.sleep(1)
    raise AssertionError(f"queue {queue} not drained")

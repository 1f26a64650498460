"""Distributed ingestion with real worker processes, a real Redis and a real Elasticsearch.

Each test runs its own Redis (own port, AOF on, tmp folder) and its own queue, so it can
restart Redis without disturbing anything else; workers are `esrag worker` subprocesses.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch
from elasticsearch.helpers import scan

from esrag import localredis
from esrag.errors import EsragError
from esrag.settings import Settings, load_settings
from ingest.pipeline import ingest_files
from workers.jobstore import FINAL_STATES, Job, JobStore
from workers.submit import submit_files

LEASE = 10  # seconds (default 30)
CPU_CAP = 32  # CPU s per worker process (poison test): loading the model takes ~21, a small file ~1
SOFT_LIMIT = 15  # seconds, soft time limit in the timeout test
POISON_PARAGRAPHS = 3000  # thousands of chunks: minutes of CPU to embed
WORDS = ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho "
         "sigma tau upsilon phi chi psi omega").split()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Stack:
    """A private Redis plus the environment workers and submitters share."""

    redis_dir: Path
    port: int
    env: dict[str, str]
    settings: Settings
    workers: list[subprocess.Popen] = field(default_factory=list)
    redis_proc: subprocess.Popen | None = None

    def start_redis(self) -> None:
        self.redis_dir.mkdir(parents=True, exist_ok=True)
        self.redis_proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.redis_dir),
             "--appendonly", "yes", "--appendfsync", "always", "--save", ""],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        for _ in range(100):
            if localredis.ping(self.settings.redis_url):
                return
            time.sleep(0.1)
        raise RuntimeError("test redis did not start")

    def stop_redis(self) -> None:
        if self.redis_proc and self.redis_proc.poll() is None:
            self.redis_proc.terminate()
            self.redis_proc.wait(timeout=20)

    def start_worker(self, name: str | None = None, cpu_seconds: int | None = None) -> subprocess.Popen:
        """An `esrag worker`; ``cpu_seconds`` caps the CPU time of each of its processes
        (RLIMIT_CPU, as `ulimit -t` or a container's limit would): the kernel kills a
        process that uses more (SIGXCPU)."""
        log = open(self.redis_dir.parent / f"worker-{len(self.workers)}.log", "wb")  # noqa: SIM115

        def limits() -> None:
            import resource

            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            if cpu_seconds is not None:
                resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 5))

        proc = subprocess.Popen(
            [sys.executable, "-m", "esrag.cli", "worker", "--loglevel", "WARNING",
             *(["--name", f"{name}@%h"] if name else [])],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=limits,
        )
        self.workers.append(proc)
        return proc

    def kill_worker(self, proc: subprocess.Popen) -> None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def store(self) -> JobStore:
        return JobStore.from_url(self.settings.redis_url, patient=True)

    def wait(self, job_id: str, timeout: float) -> Job:
        deadline = time.monotonic() + timeout
        store = self.store()
        while time.monotonic() < deadline:
            job = store.get(job_id)
            if job is not None and job.status in FINAL_STATES:
                return job
            time.sleep(0.5)
        raise AssertionError(f"job {job_id} not finished in {timeout}s: {store.get(job_id)}\n{self.logs()}")

    def logs(self) -> str:
        """The last 2,000 characters of each worker's log."""
        return "\n".join(p.read_text()[-2000:] for p in sorted(self.redis_dir.parent.glob("worker-*.log")))


@pytest.fixture()
def stack(settings: Settings, tmp_path: Path) -> Iterator[Stack]:
    port = _free_port()
    queue = f"test-{uuid.uuid4().hex[:8]}"
    # default visibility timeout (an hour) and time limits; only the lease is shortened
    env = {**os.environ, "ESRAG_REDIS_URL": f"redis://127.0.0.1:{port}/0", "ESRAG_QUEUE": queue,
           "ESRAG_INDEX": settings.index, "ESRAG_TASK_LEASE_SECONDS": str(LEASE),
           "ESRAG_TASK_MAX_FILES": "1", "ESRAG_TASK_RETRY_BACKOFF_MAX": "4", "ESRAG_TORCH_THREADS": "1"}
    st = Stack(tmp_path / "redis", port, env,
               load_settings(index=settings.index, redis_url=env["ESRAG_REDIS_URL"], queue=queue,
                             task_max_files=1, task_lease_seconds=LEASE))
    st.start_redis()
    yield st
    for proc in st.workers:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    st.stop_redis()


def _corpus(folder: Path, n: int, paragraphs: int = 3) -> list[Path]:
    folder.mkdir()
    files = []
    for i in range(n):
        text = "\n\n".join(
            f"Document {i} part {p}. " + " ".join(WORDS[(i * 7 + p * 3 + k) % len(WORDS)] for k in range(60))
            for p in range(paragraphs)
        )
        path = folder / f"doc{i:03d}.txt"
        path.write_text(text)
        files.append(path)
    return files


def _node(task: dict) -> str:
    """The Celery node name of the worker that ran a task ("host:name@host" in the record)."""
    return str(task.get("worker", "")).split(":", 1)[-1]


def _chunk_ids(es: Elasticsearch, alias: str) -> list[str]:
    es.indices.refresh(index=alias)
    hits = scan(es, index=alias, query={"query": {"match_all": {}}, "_source": False})
    return sorted(h["_id"] for h in hits)


def _sync_ids(es: Elasticsearch, files: list[Path], settings: Settings) -> list[str]:
    sync = settings.model_copy(update={"index": f"{settings.index}-sync"})
    summary = ingest_files(files, sync)
    assert summary.failed == []
    return _chunk_ids(es, sync.index)


@pytest.mark.timeout(240)
def test_two_workers_match_sync_ingest(es: Elasticsearch, stack: Stack, settings: Settings, tmp_path: Path):
    files = _corpus(tmp_path / "docs", 12)
    expected = _sync_ids(es, files, settings)
    stack.start_worker()
    stack.start_worker()
    job_id = submit_files(files, stack.settings)
    job = stack.wait(job_id, 180)
    assert job.status == "completed", job.failures
    assert job.tasks_total == 12 and job.tasks_done == 12
    assert job.counters["documents"] == 12
    assert job.counters["chunks"] == len(expected)
    assert _chunk_ids(es, settings.index) == expected


@pytest.mark.timeout(300)
def test_job_runs_with_the_submitters_id_scope(es: Elasticsearch, stack: Stack, settings: Settings,
                                              tmp_path: Path):
    """`esrag ingest --id-scope global` reaches the workers (whose own setting is the default,
    file): after a job of two files sharing an id (two documents), a global-scope job of one
    of them leaves one document, that file's."""
    import json as _json

    data = tmp_path / "jsonl"
    data.mkdir()
    for name, text in (("a.jsonl", "Rye bread needs a sour starter."),
                       ("b.jsonl", "Spelt bread rises fast.")):
        (data / name).write_text(_json.dumps({"id": "bread", "text": text}) + "\n")
    stack.start_worker()

    def texts() -> list[str]:
        es.indices.refresh(index=settings.index)
        query = {"query": {"term": {"doc_id": "bread"}}}
        return sorted(h["_source"]["text"] for h in scan(es, index=settings.index, query=query))

    job = stack.wait(submit_files([data / "a.jsonl", data / "b.jsonl"], stack.settings), 180)
    assert job.status == "completed" and job.failures == []
    assert texts() == ["Rye bread needs a sour starter.", "Spelt bread rises fast."]
    glob = stack.settings.model_copy(update={"id_scope": "global"})
    job = stack.wait(submit_files([data / "b.jsonl"], glob), 180)
    assert job.status == "completed" and job.failures == []
    assert texts() == ["Spelt bread rises fast."]


@pytest.mark.timeout(300)
def test_kill_9_worker_mid_job(es: Elasticsearch, stack: Stack, settings: Settings, tmp_path: Path):
    """Default visibility timeout (an hour): the killed worker's task must come back through
    its lease, shown as stalled until a live worker reclaims it, and run exactly once more,
    on that worker. The survivor starts after the kill, so the stalled state is there to see
    for as long as no worker is alive (with one alive it lasts at most a reaper round)."""
    files = _corpus(tmp_path / "docs", 30)
    expected = _sync_ids(es, files, settings)
    victim = stack.start_worker(name="victim")
    job_id = submit_files(files, stack.settings)
    store = stack.store()
    held = None
    deadline = time.monotonic() + 150
    while held is None and time.monotonic() < deadline:
        job = store.get(job_id)
        running = [t for t, state in store.task_states(job_id).items() if state == "running"]
        if job.tasks_done >= 3 and running:
            held = running[0]
        else:
            time.sleep(0.1)
    assert held is not None, "the victim never held a task"
    stack.kill_worker(victim)
    assert _node(store.task(job_id, held)).startswith("victim@")
    # once its lease expires (at most LEASE seconds after the last renewal) it shows as stalled
    deadline = time.monotonic() + LEASE + 20
    while store.task_states(job_id)[held] != "stalled" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert store.task_states(job_id)[held] == "stalled", "the dead worker's task never showed as stalled"
    snapshot = store.get(job_id)
    assert (snapshot.tasks_stalled, snapshot.tasks_running, snapshot.to_dict()["eta_s"]) == (1, 0, None)
    stack.start_worker(name="survivor")
    deadline = time.monotonic() + 60
    while store.task(job_id, held)["attempts"] < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert store.task(job_id, held)["attempts"] == 2, f"not run again within 60 s\n{stack.logs()}"
    job = stack.wait(job_id, 200)
    assert job.status == "completed", (job.failures, stack.logs())
    assert (job.tasks_done, job.tasks_failed, job.tasks_stalled) == (30, 0, 0)
    assert job.counters["documents"] == 30
    # the victim may die after its document's write landed and before its result was
    # counted: the rerun then finds the document complete and counts it as unchanged
    assert len(expected) == 60  # two chunks a file
    assert (job.counters["skipped_unchanged"], job.counters["chunks"]) in ((0, 60), (1, 58)), job.counters
    rec = store.task(job_id, held)
    assert (rec["state"], rec["attempts"], rec["lost"]) == ("done", 2, 1)
    assert _node(rec).startswith("survivor@")
    others = [r["attempts"] for t, r in store.tasks(job_id).items() if t != held]
    assert others == [1] * 29
    ids = _chunk_ids(es, settings.index)
    assert ids == expected
    assert len(ids) == len(set(ids))


@pytest.mark.timeout(300)
def test_redis_restart_mid_task_under_ingest_wait(es: Elasticsearch, stack: Stack, settings: Settings,
                                                  tmp_path: Path):
    """`esrag ingest --wait --timeout` rides out a Redis restart in the middle of a task;
    the task records its result afterwards and nothing is lost or counted twice."""
    from workers.cli import workers_online

    files = _corpus(tmp_path / "docs", 8, paragraphs=30)
    expected = _sync_ids(es, files, settings)
    stack.start_worker()
    deadline = time.monotonic() + 120
    while not workers_online(stack.settings) and time.monotonic() < deadline:
        time.sleep(0.5)
    cli = subprocess.Popen(
        [sys.executable, "-m", "esrag.cli", "ingest", str(tmp_path / "docs"), "--wait", "--timeout", "240",
         "--json"], env=stack.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        store = stack.store()
        running = None
        deadline = time.monotonic() + 150
        while running is None and time.monotonic() < deadline:
            job_ids = store.r.zrange("esrag:jobs", 0, -1)
            if job_ids:
                states = store.task_states(job_ids[0])
                done = list(states.values()).count("done")
                running = next((t for t, st in states.items() if st == "running" and done >= 1), None)
            time.sleep(0.1)
        assert running is not None
        stack.stop_redis()
        time.sleep(5)
        stack.start_redis()
        out, err = cli.communicate(timeout=260)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
    assert cli.returncode == 0, err
    summary = json.loads(out)
    assert summary["status"] == "completed"
    assert (summary["documents"], summary["chunks"], summary["failed"]) == (8, len(expected), [])
    job = store.get(summary["job"])
    assert (job.tasks_done, job.tasks_failed) == (8, 0)
    assert store.task(job.id, running)["state"] == "done"
    assert _chunk_ids(es, settings.index) == expected


@pytest.mark.timeout(240)
def test_ingest_wait_timeout_is_one_line(stack: Stack, settings: Settings, tmp_path: Path):
    """--timeout ends the wait with one line and exit 1; the job goes on on the worker."""
    from workers.cli import workers_online

    _corpus(tmp_path / "docs", 3)
    stack.start_worker()
    deadline = time.monotonic() + 120
    while not workers_online(stack.settings) and time.monotonic() < deadline:
        time.sleep(0.5)
    proc = subprocess.run(
        [sys.executable, "-m", "esrag.cli", "ingest", str(tmp_path / "docs"), "--timeout", "1"],
        env=stack.env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 1
    m = re.fullmatch(r"error: job (\w+) did not finish within 1 s; it goes on on the workers "
                     r"\(see `esrag job \1`\)\n", proc.stderr)
    assert m, proc.stderr
    job = stack.wait(m.group(1), 180)
    assert (job.status, job.counters["documents"]) == ("completed", 3)


@pytest.mark.timeout(240)
def test_poison_file_fails_alone(es: Elasticsearch, stack: Stack, settings: Settings, tmp_path: Path):
    files = _corpus(tmp_path / "docs", 5)
    poison = tmp_path / "docs" / "poison.pdf"
    poison.write_bytes(b"%PDF-1.4\n" + os.urandom(2048))
    expected = _sync_ids(es, files, settings)
    stack.start_worker()
    job_id = submit_files([*files, poison], stack.settings)
    job = stack.wait(job_id, 180)
    assert job.status == "completed_with_failures"
    assert [f["source"] for f in job.failures] == [str(poison)]
    assert job.counters["documents"] == 5
    assert _chunk_ids(es, settings.index) == expected


def test_submit_refused_when_redis_down(settings: Settings, tmp_path: Path):
    files = _corpus(tmp_path / "docs", 1)
    down = load_settings(index=settings.index, redis_url=f"redis://127.0.0.1:{_free_port()}/0")
    from esrag.errors import ServiceUnavailable

    with pytest.raises(ServiceUnavailable, match=r"^Redis at redis://127\.0\.0\.1:\d+/0 is unavailable "
                       r"\(ConnectionError\); job not submitted$"):
        submit_files(files, down)


@pytest.fixture()
def private_es(settings: Settings) -> Iterator[Settings]:
    """An Elasticsearch node of this test's own (port 9271), so it can be stopped mid-job."""
    import shutil
    import tempfile

    from esrag import localnode

    state = Path(tempfile.mkdtemp(prefix="esrag-es-", dir="/tmp"))
    state.chmod(0o755)
    node = load_settings(index=settings.index, es_url="http://127.0.0.1:9271", state_dir=state,
                         es_heap="384m")
    localnode.start_nodes(node)
    yield node
    localnode.stop_nodes(node)
    shutil.rmtree(state, ignore_errors=True)


@pytest.mark.timeout(420)
def test_elasticsearch_down_mid_job(es: Elasticsearch, stack: Stack, private_es: Settings, settings: Settings,
                                    tmp_path: Path):
    from esrag import localnode
    from esrag.es import make_client

    files = _corpus(tmp_path / "docs", 16)
    expected = _sync_ids(es, files, settings)
    stack.env["ESRAG_ES_URL"] = private_es.es_url
    stack.env["ESRAG_TASK_MAX_RETRIES"] = "60"  # backoff capped at 4 s: rides out about 4 minutes
    stack.start_worker()
    job_id = submit_files(files, stack.settings)
    store = stack.store()
    deadline = time.monotonic() + 150
    while store.get(job_id).tasks_done < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    localnode.stop_nodes(private_es)
    time.sleep(8)
    mid = store.get(job_id)
    assert mid.status == "running" and mid.tasks_done < 16
    localnode.start_nodes(private_es)
    job = stack.wait(job_id, 300)
    assert job.status == "completed", job.failures
    assert job.tasks_done == 16
    client = make_client(private_es)
    try:
        assert _chunk_ids(client, settings.index) == expected
    finally:
        client.close()


def _costly_file(path: Path, paragraphs: int) -> Path:
    """A text file whose embedding costs minutes of CPU (thousands of chunks)."""
    path.write_text("\n\n".join(
        f"Section {p}. " + " ".join(WORDS[(p * 11 + k * 5) % len(WORDS)] + str(k % 97) for k in range(150))
        for p in range(paragraphs)))
    return path


def _ids_of(es: Elasticsearch, alias: str, sources: list[Path]) -> list[str]:
    es.indices.refresh(index=alias)
    hits = scan(es, index=alias, _source=False,
                query={"query": {"terms": {"source": [str(p) for p in sources]}}})
    return sorted(h["_id"] for h in hits)


@pytest.mark.timeout(600)
def test_file_that_kills_its_worker_fails_after_max_attempts(es: Elasticsearch, stack: Stack,
                                                             settings: Settings, tmp_path: Path):
    """A file whose processing gets the worker process killed (here by the kernel, at the
    CPU-time cap an operator set with RLIMIT_CPU) dies with it on every delivery: after
    ESRAG_TASK_MAX_ATTEMPTS (3) deaths its file is a one-line failure, the other files index."""
    files = _corpus(tmp_path / "docs", 3)
    poison = _costly_file(tmp_path / "docs" / "costly.txt", POISON_PARAGRAPHS)
    expected = _sync_ids(es, files, settings)
    stack.start_worker(cpu_seconds=CPU_CAP)
    job_id = submit_files([*files, poison], stack.settings)
    job = stack.wait(job_id, 560)
    assert job.status == "completed_with_failures"
    assert job.failures == [{"source": str(poison),
                             "error": "worker died while processing this file (3 attempts)"}]
    assert (job.tasks_done, job.tasks_failed) == (3, 1)
    assert job.counters["documents"] == 3
    assert job.counters["chunks"] == len(expected)
    store = stack.store()
    rec = next(r for r in store.tasks(job_id).values() if r["files"] == [str(poison)])
    assert (rec["state"], rec["attempts"], rec["lost"]) == ("failed", 3, 3)
    assert _ids_of(es, settings.index, files) == expected


@pytest.mark.timeout(300)
def test_task_over_its_soft_time_limit_fails_after_max_attempts(es: Elasticsearch, stack: Stack,
                                                                settings: Settings, tmp_path: Path):
    """A task over ESRAG_TASK_SOFT_TIME_LIMIT stops, counts as a lost attempt, and runs again
    in a fresh pool process; after 3 its file is a one-line failure, the worker lives on.
    (Only the slow file: with a 15 s limit even loading the model in a fresh process, which
    every attempt does, can overrun it on a loaded machine.)"""
    slow = _costly_file(tmp_path / "slow.txt", POISON_PARAGRAPHS)
    stack.env.update(ESRAG_TASK_SOFT_TIME_LIMIT=str(SOFT_LIMIT), ESRAG_TASK_TIME_LIMIT=str(SOFT_LIMIT * 4))
    worker = stack.start_worker()
    job_id = submit_files([slow], stack.settings)
    job = stack.wait(job_id, 260)
    assert job.status == "completed_with_failures"
    assert job.failures == [{"source": str(slow), "error": f"task timed out after {SOFT_LIMIT} s while "
                                                          "processing this file (3 attempts)"}]
    assert (job.tasks_done, job.tasks_failed) == (0, 1)
    rec = next(iter(stack.store().tasks(job_id).values()))
    assert (rec["state"], rec["attempts"], rec["lost"]) == ("failed", 3, 3)
    assert worker.poll() is None


def _queued(stack: Stack) -> int:
    """Messages waiting in the stack's queue (kombu keeps a list per priority step)."""
    import redis

    r = redis.Redis.from_url(stack.settings.redis_url)
    try:
        return sum(int(r.llen(stack.settings.queue + s)) for s in ("", "\x06\x163", "\x06\x166", "\x06\x169"))
    finally:
        r.close()


@pytest.mark.timeout(240)
def test_requeue_unfinished_rebuilds_a_lost_queue(es: Elasticsearch, stack: Stack, settings: Settings,
                                                  tmp_path: Path):
    """`esrag job ID --requeue`: the queue's messages are gone (a broker restarted without its
    AOF); every task not yet counted is published again, and a worker then finishes the job."""
    import redis

    from workers.submit import requeue_unfinished

    files = _corpus(tmp_path / "docs", 3)
    expected = _sync_ids(es, files, settings)
    job_id = submit_files(files, stack.settings)  # no worker yet: the 3 tasks wait in the queue
    assert _queued(stack) == 3
    r = redis.Redis.from_url(stack.settings.redis_url)
    r.delete(*[stack.settings.queue + s for s in ("", "\x06\x163", "\x06\x166", "\x06\x169")])
    r.close()
    assert _queued(stack) == 0
    assert requeue_unfinished(job_id, stack.settings) == 3
    assert _queued(stack) == 3
    stack.start_worker()
    job = stack.wait(job_id, 180)
    assert (job.status, job.tasks_done, job.counters["documents"]) == ("completed", 3, 3)
    assert _chunk_ids(es, settings.index) == expected
    assert requeue_unfinished(job_id, stack.settings) == 0  # all counted: nothing to publish
    assert _queued(stack) == 0


@pytest.mark.timeout(240)
def test_a_file_gone_before_its_task_runs_is_not_readable_on_worker(
    es: Elasticsearch, stack: Stack, settings: Settings, tmp_path: Path
):
    files = _corpus(tmp_path / "docs", 2)
    job_id = submit_files(files, stack.settings)
    files[1].unlink()  # the worker, when it runs, does not find it (another machine, a deleted file)
    stack.start_worker(name="reader")
    job = stack.wait(job_id, 180)
    assert job.status == "completed_with_failures"
    host = socket.gethostname()
    assert job.failures == [{"source": str(files[1]),
                             "error": f"not readable on worker {host}:reader@{host}"}]
    assert (job.tasks_done, job.counters["documents"]) == (2, 1)


def test_shared_roots_refuse_a_file_other_workers_cannot_read(stack: Stack, tmp_path: Path):
    """With ESRAG_SHARED_ROOTS set, a file outside them is refused before any job is recorded."""
    shared = tmp_path / "shared"
    inside = _corpus(shared, 1)
    outside = _corpus(tmp_path / "local", 1)
    strict = stack.settings.model_copy(update={"shared_roots": [shared]})
    with pytest.raises(EsragError) as info:
        submit_files([*inside, *outside], strict)
    assert str(info.value) == (f"{outside[0]} is not under ESRAG_SHARED_ROOTS ({shared}); workers on other "
                               "machines could not read it")
    assert stack.store().list(10) == [] and _queued(stack) == 0
    job_id = submit_files(inside, strict)
    assert [j.id for j in stack.store().list(10)] == [job_id] and _queued(stack) == 1

"""Distributed ingestion with real worker processes, a real Redis and a real Elasticsearch.

Each test runs its own Redis (own port, AOF on, tmp folder) and its own queue, so it can
restart Redis without disturbing anything else; workers are `esrag worker` subprocesses.
"""

from __future__ import annotations

import os
import signal
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
from esrag.settings import Settings, load_settings
from ingest.pipeline import ingest_files
from workers.jobstore import FINAL_STATES, Job, JobStore
from workers.submit import submit_files

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

    def start_worker(self) -> subprocess.Popen:
        log = open(self.redis_dir.parent / f"worker-{len(self.workers)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", "esrag.cli", "worker", "--loglevel", "WARNING"],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
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
        logs = "\n".join(p.read_text()[-2000:] for p in self.redis_dir.parent.glob("worker-*.log"))
        raise AssertionError(f"job {job_id} not finished in {timeout}s: {store.get(job_id)}\n{logs}")


@pytest.fixture()
def stack(settings: Settings, tmp_path: Path) -> Iterator[Stack]:
    port = _free_port()
    queue = f"test-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "ESRAG_REDIS_URL": f"redis://127.0.0.1:{port}/0", "ESRAG_QUEUE": queue,
           "ESRAG_INDEX": settings.index, "ESRAG_TASK_VISIBILITY_TIMEOUT": "15",
           "ESRAG_TASK_MAX_FILES": "1", "ESRAG_TASK_RETRY_BACKOFF_MAX": "4", "ESRAG_TORCH_THREADS": "1"}
    st = Stack(tmp_path / "redis", port, env,
               load_settings(index=settings.index, redis_url=env["ESRAG_REDIS_URL"], queue=queue,
                             task_max_files=1, task_visibility_timeout=15))
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
    assert job.status == "completed"
    assert job.tasks_total == 12 and job.tasks_done == 12
    assert job.counters["documents"] == 12
    assert job.counters["chunks"] == len(expected)
    assert _chunk_ids(es, settings.index) == expected


@pytest.mark.timeout(300)
def test_kill_9_worker_mid_job(es: Elasticsearch, stack: Stack, settings: Settings, tmp_path: Path):
    files = _corpus(tmp_path / "docs", 30)
    expected = _sync_ids(es, files, settings)
    victim = stack.start_worker()
    stack.start_worker()
    job_id = submit_files(files, stack.settings)
    store = stack.store()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job = store.get(job_id)
        running = [t for t in store.tasks(job_id).values() if t["state"] == "running"]
        if job.tasks_done >= 3 and running:
            break
        time.sleep(0.2)
    stack.kill_worker(victim)
    job = stack.wait(job_id, 200)
    assert job.status == "completed"
    assert job.tasks_done == 30
    ids = _chunk_ids(es, settings.index)
    assert ids == expected
    assert len(ids) == len(set(ids))


@pytest.mark.timeout(300)
def test_redis_restart_mid_job(es: Elasticsearch, stack: Stack, settings: Settings, tmp_path: Path):
    files = _corpus(tmp_path / "docs", 16)
    expected = _sync_ids(es, files, settings)
    stack.start_worker()
    job_id = submit_files(files, stack.settings)
    store = stack.store()
    deadline = time.monotonic() + 120
    while store.get(job_id).tasks_done < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    stack.stop_redis()
    time.sleep(3)
    stack.start_redis()
    job = stack.wait(job_id, 240)
    assert job.status == "completed"
    assert job.tasks_done == 16
    assert _chunk_ids(es, settings.index) == expected


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

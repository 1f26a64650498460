"""A real 3-node cluster from `esrag up --nodes 3`, and a node killed under load.

The cluster runs on its own ports and state dir (never the shared node on 9200). Two
failover tests: one at the Elasticsearch client level (a bulk-indexing thread and a query
thread, BM25 and kNN, while one node gets SIGKILL), and one end to end: a real `esrag
worker` ingests a job while esrag's own hybrid search runs, and a node gets SIGKILL.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from elasticsearch import ApiError, Elasticsearch, TransportError
from elasticsearch.helpers import scan

from esrag import localnode
from esrag.embedder import ModelInfo
from esrag.index import ensure_index
from esrag.settings import Settings, load_settings

pytestmark = pytest.mark.timeout(900)

NODES = 3
HEAP = "320m"
DIMS = 16
DOCS = 4000
BATCH = 100
QUERY_ATTEMPTS = 6
BULK_ATTEMPTS = 40
WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"]
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Cluster:
    """A local cluster started by the CLI for this module."""

    settings: Settings
    env: dict[str, str]
    layouts: list[localnode.NodeLayout]
    urls: list[str]

    def cli(self, *args: str, timeout: float = 400) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "esrag.cli", *args], env=self.env, cwd=ROOT,
            capture_output=True, text=True, timeout=timeout,
        )

    def client(self) -> Elasticsearch:
        """A client that knows every node, so losing one is a retry, not an outage."""
        return Elasticsearch(
            self.urls, request_timeout=30, max_retries=3, retry_on_timeout=True,
            retry_on_status=(429, 502, 503, 504),
        )


def _free_base_port() -> int:
    for base in (9250, 9260, 9270, 9280):
        ports = [base + i for i in range(NODES)] + [base + 100 + i for i in range(NODES)]
        if not any(localnode._port_in_use(p) for p in ports):
            return base
    pytest.fail("no free ports for a local 3-node cluster (9250-9289, 9350-9389)")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    base = _free_base_port()
    state = Path(tempfile.mkdtemp(prefix="esrag-multinode-", dir="/tmp"))
    state.chmod(0o755)  # the unprivileged ES user must reach its node folders
    env = {
        **os.environ,
        "ESRAG_STATE_DIR": str(state),
        "ESRAG_ES_URL": f"http://127.0.0.1:{base}",
        "ESRAG_ES_START_TIMEOUT": "400",
    }
    settings = load_settings(
        state_dir=state, es_url=env["ESRAG_ES_URL"], es_nodes=NODES, es_heap=HEAP,
        index="mn-test", shards=3, replicas=1,
    )
    layouts = localnode.node_layouts(settings, NODES)
    made = Cluster(settings, env, layouts, [f"http://127.0.0.1:{n.http_port}" for n in layouts])
    try:
        up = made.cli("up", "--nodes", str(NODES), "--heap", HEAP, timeout=450)
        assert up.returncode == 0, up.stderr + up.stdout
        yield made
    finally:
        localnode.stop_nodes(settings, timeout=30)
        for node in layouts:  # a node restarted by a failed test still goes
            localnode.kill_node(node)
        shutil.rmtree(state, ignore_errors=True)


def test_up_three_nodes_is_green_with_separate_processes(cluster: Cluster) -> None:
    status = cluster.cli("status", "--json", timeout=60)
    report = json.loads(status.stdout)["elasticsearch"]
    assert report["up"] is True
    assert report["nodes"] == 3
    assert report["node_names"] == ["node-0", "node-1", "node-2"]
    assert report["status"] == "green"
    pids = {localnode.read_pid(n) for n in cluster.layouts}
    assert None not in pids and len(pids) == 3
    datas = {n.data for n in cluster.layouts}
    assert len(datas) == 3 and all((d / "_state").is_dir() for d in datas)
    dists = list((cluster.settings.state_dir / "dist").glob("elasticsearch-*"))
    assert [d.name for d in dists] == [f"elasticsearch-{cluster.settings.es_version}"]
    for node in cluster.layouts:
        yml = (node.config / "elasticsearch.yml").read_text()
        assert f"http.port: {node.http_port}" in yml
        assert f"path.data: {node.data}" in yml


def _vec(i: int) -> list[float]:
    rng = np.random.default_rng(i)
    v = rng.standard_normal(DIMS).astype(np.float32)
    return (v / np.linalg.norm(v)).tolist()


def _doc(i: int) -> dict:
    words = " ".join(WORDS[(i * k) % len(WORDS)] for k in (1, 3, 7))
    return {"chunk_id": f"c{i:05d}", "doc_id": f"d{i:05d}", "chunk_no": 0,
            "text": f"document {i} {words}", "embedding": _vec(i)}


@dataclass
class Tally:
    """What the two loops saw."""

    indexed_batches: int = 0
    bulk_retries: int = 0
    bulk_failures: list[str] = field(default_factory=list)
    queries: int = 0
    query_retries: int = 0
    query_errors: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    finished_at: list[float] = field(default_factory=list)


def _index_loop(client: Elasticsearch, index: str, tally: Tally, half: threading.Event) -> None:
    """Bulk-index DOCS documents with fixed ids; retry the failed items of each batch."""
    batches = DOCS // BATCH
    for b in range(batches):
        pending = list(range(b * BATCH, (b + 1) * BATCH))
        for attempt in range(BULK_ATTEMPTS):
            ops: list[dict] = []
            for i in pending:
                ops += [{"index": {"_index": index, "_id": f"c{i:05d}"}}, _doc(i)]
            try:
                resp = client.bulk(operations=ops)
                items = resp["items"]
                pending = [i for i, it in zip(pending, items, strict=True) if it["index"].get("error")]
            except (TransportError, ApiError) as exc:
                last = f"{type(exc).__name__}: {exc}"[:200]
            else:
                last = f"{len(pending)} items failed"
            if not pending:
                break
            tally.bulk_retries += 1
            time.sleep(min(0.25 * (attempt + 1), 2.0))
        else:
            tally.bulk_failures.append(f"batch {b}: {last}")
        tally.indexed_batches += 1
        if tally.indexed_batches == batches // 2:
            half.set()
        time.sleep(0.05)


def _query_loop(client: Elasticsearch, alias: str, tally: Tally, stop: threading.Event) -> None:
    """Alternate BM25 and kNN queries; an error counts only once every retry failed."""
    n = 0
    while not stop.is_set():
        n += 1
        if n % 2:
            body = {"query": {"match": {"text": WORDS[n % len(WORDS)]}}}
        else:
            body = {"knn": {"field": "embedding", "query_vector": _vec(n), "k": 10, "num_candidates": 50}}
        started = time.monotonic()
        for attempt in range(QUERY_ATTEMPTS):
            try:
                client.search(index=alias, size=10, allow_partial_search_results=False, **body)
                break
            except (TransportError, ApiError) as exc:
                last = f"{type(exc).__name__}: {exc}"[:200]
                tally.query_retries += 1
                time.sleep(0.25 * (attempt + 1))
        else:
            tally.query_errors.append(last)
        tally.latencies.append(time.monotonic() - started)
        tally.finished_at.append(time.monotonic())
        tally.queries += 1


def _victim(client: Elasticsearch, cluster: Cluster) -> localnode.NodeLayout:
    """A node that is neither the elected master nor node-0 (the CLI's ESRAG_ES_URL)."""
    master = client.cat.master(format="json")[0]["node"]
    return next(n for n in cluster.layouts[1:] if n.name != master)


def test_kill_a_node_during_bulk_indexing_and_queries(cluster: Cluster) -> None:
    client = cluster.client()
    model = ModelInfo("multinode-test", DIMS)
    index = ensure_index(client, cluster.settings, model)
    client.cluster.health(index=index, wait_for_status="green", timeout="60s")
    settings = client.indices.get_settings(index=index)[index]["settings"]["index"]
    assert (settings["number_of_shards"], settings["number_of_replicas"]) == ("3", "1")
    victim = _victim(client, cluster)

    tally = Tally()
    half, stop = threading.Event(), threading.Event()
    indexer = threading.Thread(target=_index_loop, args=(client, index, tally, half), daemon=True)
    querier = threading.Thread(target=_query_loop, args=(client, "mn-test", tally, stop), daemon=True)
    started = time.monotonic()
    indexer.start()
    querier.start()
    assert half.wait(timeout=300), "indexing did not reach half-way"
    kill_time = time.monotonic()
    killed_at = kill_time - started
    localnode.kill_node(victim)
    indexer.join(timeout=400)
    assert not indexer.is_alive(), "indexing did not finish"
    time.sleep(2.0)  # keep querying the degraded cluster a little longer
    stop.set()
    querier.join(timeout=120)
    elapsed = time.monotonic() - started

    health = client.cluster.health(wait_for_nodes="2", timeout="60s")
    client.indices.refresh(index=index)
    count = client.count(index=index)["count"]
    ids = [h["_id"] for h in scan(client, index=index, query={"_source": False}, size=1000)]
    after = [lat for lat, t in zip(tally.latencies, tally.finished_at, strict=True) if t >= kill_time]
    summary = {
        "docs": DOCS, "count": count, "killed": victim.name, "killed_at_s": round(killed_at, 2),
        "elapsed_s": round(elapsed, 2), "queries": tally.queries, "query_retries": tally.query_retries,
        "query_errors": len(tally.query_errors), "bulk_retries": tally.bulk_retries,
        "max_query_latency_s": round(max(tally.latencies), 3),
        "max_query_latency_after_kill_s": round(max(after, default=0.0), 3),
        "queries_after_kill": len(after),
        "p50_query_latency_s": round(float(np.percentile(tally.latencies, 50)), 3),
        "p99_query_latency_s": round(float(np.percentile(tally.latencies, 99)), 3),
        "health_after": health["status"], "nodes_after": health["number_of_nodes"],
    }
    print("multinode failover:", json.dumps(summary))
    client.close()

    assert localnode.read_pid(victim) is None
    assert health["number_of_nodes"] == 2
    assert health["status"] in ("yellow", "green")
    assert tally.bulk_failures == []
    assert tally.query_errors == []
    assert tally.queries > 20 and len(after) > 5
    assert max(tally.latencies) < 20.0
    assert count == DOCS
    assert len(ids) == DOCS and set(ids) == {f"c{i:05d}" for i in range(DOCS)}


def _job_corpus(folder: Path, n: int) -> list[Path]:
    """``n`` small text files, one chunk each."""
    folder.mkdir()
    files = []
    for i in range(n):
        words = " ".join(WORDS[(i * k) % len(WORDS)] for k in range(1, 40))
        path = folder / f"doc{i:03d}.txt"
        path.write_text(f"Failover document {i}. {words}.")
        files.append(path)
    return files


FILES = 60


@pytest.mark.timeout(600)
def test_kill_a_node_while_a_worker_job_ingests(cluster: Cluster, tmp_path: Path) -> None:
    import uuid

    from esrag.embedder import get_embedder
    from query.retrieval import search
    from workers.jobstore import FINAL_STATES, JobStore
    from workers.submit import submit_files

    restart = cluster.cli("up", "--heap", HEAP, timeout=450)  # the previous test left a node down
    assert restart.returncode == 0, restart.stderr
    client = cluster.client()
    client.cluster.health(wait_for_nodes="3", wait_for_status="green", timeout="120s")
    victim = _victim(client, cluster)
    queue = f"mn-{uuid.uuid4().hex[:8]}"
    settings = cluster.settings.model_copy(update={
        "es_url": ",".join(cluster.urls), "index": "mn-job", "queue": queue, "task_max_files": 1})
    env = {**cluster.env, "ESRAG_ES_URL": settings.es_url, "ESRAG_INDEX": "mn-job", "ESRAG_QUEUE": queue,
           "ESRAG_SHARDS": "3", "ESRAG_REPLICAS": "1", "ESRAG_TASK_MAX_FILES": "1",
           "ESRAG_TASK_RETRY_BACKOFF_MAX": "4", "ESRAG_TORCH_THREADS": "1"}
    files = _job_corpus(tmp_path / "docs", FILES)
    log = open(tmp_path / "worker.log", "wb")  # noqa: SIM115
    worker = subprocess.Popen([sys.executable, "-m", "esrag.cli", "worker", "--loglevel", "WARNING"],
                              env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    store = JobStore.from_url(settings.redis_url, patient=True)
    errors: list[str] = []
    latencies: list[tuple[float, float]] = []  # (finished at, seconds)
    stop = threading.Event()

    def query_loop() -> None:  # esrag's own search path, as the API runs it
        n = 0
        while not stop.is_set():
            started = time.monotonic()
            try:
                search(settings, WORDS[n % len(WORDS)], mode="hybrid", k=5, rerank=False)
            except Exception as exc:  # noqa: BLE001 - every error is a failure of the test
                errors.append(f"{type(exc).__name__}: {exc}"[:200])
            latencies.append((time.monotonic(), time.monotonic() - started))
            n += 1
            time.sleep(0.2)

    querier = threading.Thread(target=query_loop, daemon=True)
    try:
        get_embedder(settings).encode_query(["warm up"])  # the query model, loaded before the clock runs
        job_id = submit_files(files, settings)
        deadline = time.monotonic() + 300
        while (job := store.get(job_id)) is not None and job.tasks_done < 10:
            assert time.monotonic() < deadline, f"the job did not start: {job}"
            time.sleep(0.1)
        querier.start()
        localnode.kill_node(victim)
        killed_at_done = job.tasks_done
        killed = time.monotonic()
        while (job := store.get(job_id)) is not None and job.status not in FINAL_STATES:
            assert time.monotonic() < deadline, f"the job did not finish: {job}"
            time.sleep(0.5)
        time.sleep(2.0)  # a few more searches against the degraded cluster
        stop.set()
        querier.join(timeout=120)
        after_s = time.monotonic() - killed
    finally:
        stop.set()
        os.killpg(worker.pid, 9)
        worker.wait(timeout=30)
    client.indices.refresh(index="mn-job")
    count = client.count(index="mn-job")["count"]
    hits = search(settings, "Failover document", mode="hybrid", k=5, rerank=False)
    after = [sec for at, sec in latencies if at >= killed]
    print("multinode job failover:", json.dumps({
        "killed": victim.name, "searches": len(latencies), "searches_after_kill": len(after),
        "max_search_s_after_kill": round(max(after, default=0.0), 2),
        "p50_search_s": round(float(np.percentile([sec for _, sec in latencies], 50)), 3),
        "job_seconds_after_kill": round(after_s, 1), "tasks_done_at_kill": killed_at_done}))
    client.close()
    assert localnode.read_pid(victim) is None
    assert errors == []
    assert len(after) >= 3
    assert max(after) < 30.0, "a bounded latency spike, not an outage"
    assert job is not None and job.status == "completed", job
    assert killed_at_done < FILES, "the node died while the job was ingesting"
    assert (job.tasks_total, job.tasks_done, job.tasks_failed) == (FILES, FILES, 0)
    assert job.counters["chunks"] == FILES
    assert count == FILES
    assert len(hits) == 5


def test_up_restarts_a_missing_node_and_down_stops_all(cluster: Cluster) -> None:
    if all(localnode.read_pid(n) for n in cluster.layouts):  # run alone: take one node away
        localnode.kill_node(cluster.layouts[2])
    missing = [n.name for n in cluster.layouts if localnode.read_pid(n) is None]
    assert len(missing) == 1
    up = cluster.cli("up", "--heap", HEAP, timeout=450)
    assert up.returncode == 0, up.stderr
    assert f"Elasticsearch {missing[0]} started on" in up.stdout
    report = json.loads(cluster.cli("status", "--json", timeout=60).stdout)["elasticsearch"]
    assert report["nodes"] == 3
    restarted = next(n for n in cluster.layouts if n.name == missing[0])
    yml = (restarted.config / "elasticsearch.yml").read_text()
    assert "cluster.initial_master_nodes" not in yml  # bootstrapped once: a restarted node only joins
    down = cluster.cli("down", timeout=120)
    assert down.returncode == 0, down.stderr
    for name in ("node-0", "node-1", "node-2"):
        assert f"Elasticsearch {name} stopped" in down.stdout
    assert [localnode.read_pid(n) for n in cluster.layouts] == [None, None, None]

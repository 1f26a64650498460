"""Bigger than the heap: a node with a small heap serving an index many times its size.

    .venv/bin/python bench/heap.py [--heap 512m] [--steps 10000 100000 300000] [--port 9281]

Starts a private Elasticsearch node (its own port and temporary state dir, stopped at the
end) with a small heap, creates an esrag chunk index (esrag's mapping, 384-d float
``hnsw``, vectors also kept in ``_source`` as esrag does), and grows it step by step with
real text: first the quantization corpus of bench/real_chunks.py (100k chunks of the
Python and Linux docs, 64 tokens, each with its own all-MiniLM-L6-v2 vector), then
200-token chunks of rust-doc, openjdk-17-doc and linux-doc (texts only: embedding 200k
more chunks takes hours on 2 CPU cores) whose vectors are the real ones reused
cyclically with seeded Gaussian noise (sigma 0.01 per dimension, renormalized), so HNSW
sees no exact duplicates. An `esrag serve` and an `esrag worker` run against the node the
whole time. After each step: store size, heap used, node RSS, p50/p95 of kNN and hybrid
queries (direct msearch, and through the API), and the RSS of the API and of the worker
after it ingested a small job of two files. Writes bench/results/heap.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.machine import machine_info  # noqa: E402
from bench.quantization import percentile, query_vectors  # noqa: E402
from bench.real_chunks import DOCS, load, load_texts  # noqa: E402
from bench.soak import tree_rss_mb  # noqa: E402

NOISE = 0.01
EXTRA_DOCS = [DOCS[2], DOCS[3], DOCS[1]]  # rust-doc, openjdk-17-doc, linux-doc


def doc(i: int, vectors: np.ndarray, texts: list[str], sources: list[str], rng: np.random.Generator) -> dict:
    """Chunk document ``i``: text ``i``; vector ``i`` while there are real ones, then a noisy reuse."""
    from esrag.stemming import stem_text

    n = len(vectors)
    vec = vectors[i % n]
    if i >= n:
        vec = vec + rng.normal(0, NOISE, vec.shape).astype(np.float32)
        vec = vec / np.linalg.norm(vec)
    return {"chunk_id": f"c{i}", "doc_id": sources[i], "source": sources[i], "title": sources[i],
            "chunk_no": i, "model": "all-MiniLM-L6-v2", "text": texts[i],
            "text_stemmed": stem_text(texts[i], "english"), "embedding": [round(float(x), 6) for x in vec]}


def api_queries(url: str, key: str, queries: list[str]) -> dict:
    """p50/p95 of hybrid /v1/search through the API (second of two rounds)."""
    import httpx

    ms: list[float] = []
    with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=60) as http:
        for _round in range(2):
            ms.clear()
            for q in queries:
                t0 = time.perf_counter()
                r = http.post("/v1/search", json={"query": q, "mode": "hybrid", "k": 10})
                r.raise_for_status()
                ms.append((time.perf_counter() - t0) * 1000)
    return {"api_hybrid_p50_ms": percentile(ms, 50), "api_hybrid_p95_ms": percentile(ms, 95)}


def worker_job(url: str, key: str, folder: Path, step: int) -> dict:
    """Rewrite two small files, ingest them through the API and a worker, wait for the job."""
    import httpx

    from workers.jobstore import FINAL_STATES

    folder.mkdir(parents=True, exist_ok=True)
    for n in range(2):
        (folder / f"job{n}.md").write_text(f"# Step {step} file {n}\n\n" + " ".join(
            f"Paragraph {k} of step {step}: the heap benchmark writes this file to keep a worker busy."
            for k in range(40)))
    with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=60) as http:
        job = http.post("/v1/ingest", json={"paths": [str(folder)]}).json()["job"]
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            state = http.get(f"/v1/jobs/{job}").json()
            if state["status"] in FINAL_STATES:
                return {"job_status": state["status"]}
            time.sleep(1)
    return {"job_status": "timeout"}


def measure(client, alias: str, qtexts: list[str], qvecs: np.ndarray, pid: int) -> dict:
    """Index size, heap, node RSS and query latencies at the current size."""
    from esrag.stemming import stem_text
    from query.retrieval import bm25_body, knn_body

    client.indices.refresh(index=alias)
    stats = client.indices.stats(index=alias, metric="store,docs,segments")["_all"]["primaries"]
    node = next(iter(client.nodes.stats(metric="jvm")["nodes"].values()))["jvm"]["mem"]
    knn_ms, hybrid_ms = [], []
    for _round in range(2):  # first round warms, second is measured
        knn_ms.clear()
        hybrid_ms.clear()
        for text, q in zip(qtexts, qvecs, strict=True):
            t0 = time.perf_counter()
            client.search(index=alias, **knn_body(q.tolist(), 10, 100, None))
            knn_ms.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            searches: list[dict] = []
            sparse = bm25_body(text, stem_text(text, "english"), 50, None)
            for body in (sparse, knn_body(q.tolist(), 50, 100, None)):
                searches += [{"index": alias}, body]
            r = client.msearch(searches=searches)
            assert all("error" not in x for x in r["responses"]), r
            hybrid_ms.append((time.perf_counter() - t0) * 1000)
    return {
        "docs": int(stats["docs"]["count"]), "segments": int(stats["segments"]["count"]),
        "store_bytes": int(stats["store"]["size_in_bytes"]),
        "heap_max_bytes": int(node["heap_max_in_bytes"]), "heap_used_bytes": int(node["heap_used_in_bytes"]),
        "store_over_heap": round(stats["store"]["size_in_bytes"] / node["heap_max_in_bytes"], 2),
        "node_rss_bytes": psutil.Process(pid).memory_info().rss,
        "knn_p50_ms": percentile(knn_ms, 50), "knn_p95_ms": percentile(knn_ms, 95),
        "hybrid_p50_ms": percentile(hybrid_ms, 50), "hybrid_p95_ms": percentile(hybrid_ms, 95),
        "python_rss_bytes": psutil.Process().memory_info().rss,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--heap", default="512m")
    ap.add_argument("--port", type=int, default=9281)
    ap.add_argument("--steps", type=int, nargs="+", default=[10000, 100000, 300000])
    ap.add_argument("--vectors", type=int, default=100000, help="real chunks with vectors (real_chunks.py)")
    ap.add_argument("--vector-tokens", type=int, default=64)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "heap.json")
    a = ap.parse_args()

    import uuid

    from elasticsearch.helpers import streaming_bulk

    from bench.load import free_port, served_api, stop_process
    from esrag import localnode
    from esrag.embedder import ModelInfo
    from esrag.es import make_client
    from esrag.index import create_index, swap_alias
    from esrag.settings import load_settings

    vectors, vtexts, vsources, info = load(a.vectors, a.vector_tokens)
    extra = max(0, max(a.steps) - len(vtexts))
    xtexts, xsources, xinfo = load_texts(extra, 200, EXTRA_DOCS) if extra else ([], [], {})
    if extra and len(xtexts) < extra:
        raise SystemExit(f"only {len(xtexts)} extra chunks in {EXTRA_DOCS}")
    texts, sources = vtexts + xtexts, vsources + xsources
    qtexts, qvecs = query_vectors(vtexts, a.queries)
    state = Path(tempfile.mkdtemp(prefix="esrag-heap-", dir="/tmp"))
    state.chmod(0o755)
    settings = load_settings(index="bench-heap", es_url=f"http://127.0.0.1:{a.port}", state_dir=state,
                             es_heap=a.heap, vector_index_type="hnsw")
    key = uuid.uuid4().hex
    jobs_dir = state / "jobs"
    env = {**os.environ, "ESRAG_ES_URL": settings.es_url, "ESRAG_INDEX": settings.index,
           "ESRAG_VECTOR_INDEX_TYPE": "hnsw", "ESRAG_API_KEYS": f'["{key}"]',
           "ESRAG_ALLOWED_ROOTS": f'["{state}"]', "ESRAG_QUEUE": f"bench-heap-{key[:6]}"}
    rng = np.random.default_rng(7)
    rows = []
    worker = None
    try:
        localnode.start_nodes(settings)
        pid = int(localnode.node_layouts(settings)[0].pidfile.read_text().split()[0])
        client = make_client(settings, timeout=600)
        es_version = next(iter(client.nodes.info(metric="os")["nodes"].values()))["version"]
        name = create_index(client, settings, ModelInfo("all-MiniLM-L6-v2", 384))
        swap_alias(client, settings.index, name)
        client.indices.put_settings(index=name, settings={"index": {"refresh_interval": "30s"}})
        worker = subprocess.Popen([sys.executable, "-m", "esrag.cli", "worker", "--concurrency", "1",
                                   "--loglevel", "WARNING"], env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        port = free_port()
        with served_api(env, port) as api:
            url = f"http://127.0.0.1:{port}"
            done = 0
            for step in a.steps:
                t0 = time.perf_counter()
                actions = ({"_index": name, "_id": f"c{i}", **doc(i, vectors, texts, sources, rng)}
                           for i in range(done, step))
                for ok, item in streaming_bulk(client, actions, chunk_size=500, max_retries=5):
                    assert ok, item
                ingest_s = time.perf_counter() - t0
                added, done = step - done, step
                row = {"step_docs": step, "ingest_seconds": round(ingest_s, 1),
                       "ingest_docs_per_s": round(added / ingest_s, 1),
                       **measure(client, name, qtexts, qvecs, pid),
                       **worker_job(url, key, jobs_dir, step), **api_queries(url, key, qtexts[:50]),
                       "api_rss_mb": tree_rss_mb(api.pid), "worker_rss_mb": tree_rss_mb(worker.pid)}
                print(json.dumps(row), flush=True)
                rows.append(row)
        out = {
            "benchmark": "heap", "machine": machine_info(es_version), "heap": a.heap,
            "index": {"vector_index_type": "hnsw", "dims": 384, "vectors_in_source": True,
                      "mapping": "esrag build_mapping", "refresh_interval": "30s during load"},
            "corpus": {"with_vectors": {**info, "chunks": len(vtexts)},
                       "texts_only": {**xinfo, "chunks": len(xtexts)},
                       "what": f"{len(texts[:max(a.steps)])} real text chunks: the first {len(vtexts)} with "
                       "their own vectors, the rest reuse those vectors cyclically with Gaussian noise "
                       f"sigma {NOISE}, renormalized"},
            "queries": {"count": len(qtexts), "what": "first 12 words of evenly spaced chunks; kNN k=10 "
                        "num_candidates=100; hybrid = BM25 + kNN (50 each) in one msearch; API: 50 hybrid "
                        "/v1/search; 2nd round timed"},
            "processes": "api_rss_mb / worker_rss_mb: `esrag serve` and `esrag worker --concurrency 1` "
                         "(with its pool) after a 2-file job at each step",
            "ram_note": "the machine's RAM is larger than the index: this measures bigger-than-heap, "
                        "not bigger-than-RAM (the page cache holds the files)",
            "steps": rows,
        }
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(out, indent=2))
        print(a.out)
    finally:
        if worker is not None:
            stop_process(worker, 30)
        localnode.stop_nodes(settings)
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()

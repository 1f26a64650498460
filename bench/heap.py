"""Bigger than the heap: a node with a small heap serving an index many times its size.

    .venv/bin/python bench/heap.py [--heap 256m] [--steps 10000 50000 100000 150000] [--port 9281]

Starts a private Elasticsearch node (its own port and temporary state dir, stopped at the
end) with a small heap, creates an esrag chunk index (esrag's mapping, 384-d float
``hnsw``, vectors also kept in ``_source`` as esrag does), and grows it step by step. The
documents are the real chunks of bench/real_chunks.py (Python docs, all-MiniLM-L6-v2)
reused cyclically: copy 0 is the real vector, later copies add seeded Gaussian noise
(sigma 0.01 per dimension) and renormalize, so that HNSW does not see exact duplicates.
After each step: store size, heap used, node RSS, and p50/p95 of kNN and hybrid (BM25 +
kNN in one msearch) queries, and the RSS of this (querying) Python process. Writes
bench/results/heap.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
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
from bench.real_chunks import load  # noqa: E402

NOISE = 0.01


def doc(i: int, vectors: np.ndarray, texts: list[str], sources: list[str], stems: list[str],
        rng: np.random.Generator) -> dict:
    """Chunk document ``i``: real chunk ``i mod n``; copies after the first get a noisy vector."""
    n = len(texts)
    j, rep = i % n, i // n
    vec = vectors[j]
    if rep:
        vec = vec + rng.normal(0, NOISE, vec.shape).astype(np.float32)
        vec = vec / np.linalg.norm(vec)
    return {"chunk_id": f"c{i}", "doc_id": f"{sources[j]}#{rep}", "source": sources[j], "title": sources[j],
            "chunk_no": j, "model": "all-MiniLM-L6-v2", "text": texts[j], "text_stemmed": stems[j],
            "embedding": [round(float(x), 6) for x in vec]}


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
    ap.add_argument("--heap", default="256m")
    ap.add_argument("--port", type=int, default=9281)
    ap.add_argument("--steps", type=int, nargs="+", default=[10000, 50000, 100000, 150000])
    ap.add_argument("--max-chunks", type=int, default=20000)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "heap.json")
    a = ap.parse_args()

    from elasticsearch.helpers import streaming_bulk

    from esrag import localnode
    from esrag.embedder import ModelInfo
    from esrag.es import make_client
    from esrag.index import create_index, swap_alias
    from esrag.settings import load_settings
    from esrag.stemming import stem_text

    vectors, texts, sources, info = load(a.max_chunks)
    qtexts, qvecs = query_vectors(texts, a.queries)
    stems = [stem_text(t, "english") for t in texts]
    state = Path(tempfile.mkdtemp(prefix="esrag-heap-", dir="/tmp"))
    state.chmod(0o755)
    settings = load_settings(index="bench-heap", es_url=f"http://127.0.0.1:{a.port}", state_dir=state,
                             es_heap=a.heap, vector_index_type="hnsw")
    rng = np.random.default_rng(7)
    rows = []
    try:
        localnode.start_nodes(settings)
        pid = int(localnode.node_layouts(settings)[0].pidfile.read_text().split()[0])
        client = make_client(settings, timeout=600)
        es_version = next(iter(client.nodes.info(metric="os")["nodes"].values()))["version"]
        name = create_index(client, settings, ModelInfo("all-MiniLM-L6-v2", 384))
        swap_alias(client, settings.index, name)
        client.indices.put_settings(index=name, settings={"index": {"refresh_interval": "30s"}})
        done = 0
        for step in a.steps:
            t0 = time.perf_counter()
            actions = ({"_index": name, "_id": f"c{i}", **doc(i, vectors, texts, sources, stems, rng)}
                       for i in range(done, step))
            for ok, item in streaming_bulk(client, actions, chunk_size=500, max_retries=5):
                assert ok, item
            ingest_s = time.perf_counter() - t0
            added, done = step - done, step
            row = {"step_docs": step, "ingest_seconds": round(ingest_s, 1),
                   "ingest_docs_per_s": round(added / ingest_s, 1),
                   **measure(client, name, qtexts, qvecs, pid)}
            print(json.dumps(row), flush=True)
            rows.append(row)
        out = {
            "benchmark": "heap", "machine": machine_info(es_version), "heap": a.heap,
            "index": {"vector_index_type": "hnsw", "dims": 384, "vectors_in_source": True,
                      "mapping": "esrag build_mapping", "refresh_interval": "30s during load"},
            "corpus": {**info, "what": f"{len(texts)} real chunks (Python docs) reused cyclically; copies "
                       f"after the first add Gaussian noise sigma {NOISE} to the real vector, renormalized"},
            "queries": {"count": len(qtexts), "what": "first 12 words of evenly spaced chunks; kNN k=10 "
                        "num_candidates=100; hybrid = BM25 + kNN (50 each) in one msearch; 2nd round timed"},
            "ram_note": "the machine's RAM is larger than the index: this measures bigger-than-heap, "
                        "not bigger-than-RAM (the page cache holds the files)",
            "steps": rows,
        }
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(out, indent=2))
        print(a.out)
    finally:
        localnode.stop_nodes(settings)
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()

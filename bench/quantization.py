"""Quantization benchmark: recall@10, latency, disk and off-heap memory of each vector format.

    .venv/bin/python bench/quantization.py [--max-chunks 100000] [--max-tokens 64] [--queries 200]

The same real chunk vectors (bench/real_chunks.py: Python then Linux docs, all-MiniLM-L6-v2, 384d)
go into one index per format (hnsw float32, int8_hnsw, int4_hnsw, bbq_hnsw; esrag's
m=16, ef_construction=100), force-merged to one segment. Queries are the first 12 words
of evenly spaced chunks, embedded with the same model. Recall@10 is against the exact
top 10 by cosine computed in numpy over the same float32 vectors. The vectors are left
out of ``_source`` here; the store still holds ``_recovery_source`` (the original source,
kept for the retention lease), so the vector formats' own bytes are the
``knn_vectors`` of the disk usage API. Writes
bench/results/quantization.json. Needs `esrag up` (or ESRAG_ES_URL).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from elasticsearch.exceptions import GeneralAvailabilityWarning

warnings.simplefilter("ignore", GeneralAvailabilityWarning)  # the disk usage API is a technical preview

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.machine import machine_info  # noqa: E402
from bench.real_chunks import load  # noqa: E402

TYPES = ["int8_hnsw", "bbq_hnsw", "int4_hnsw", "hnsw"]
M = 16


def hot_bytes_per_vector(kind: str, dims: int) -> float:
    """Off-heap bytes a search touches per vector (docs/SCALE.md formulas): quantized vector + graph."""
    vec = {"hnsw": 4 * dims, "int8_hnsw": dims + 4, "int4_hnsw": dims / 2 + 4,
           "bbq_hnsw": dims / 8 + 14}[kind]
    return vec + M * 4 * 2


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile, rounded to 0.01."""
    return round(float(np.percentile(values, q)), 2)


def query_vectors(texts: list[str], n: int) -> tuple[list[str], np.ndarray]:
    """The first 12 words of ``n`` evenly spaced chunks, and their embeddings."""
    from esrag.embedder import get_embedder
    from esrag.settings import load_settings

    picks = np.linspace(0, len(texts) - 1, n).astype(int)
    queries = [" ".join(texts[i].split()[:12]) for i in picks]
    return queries, get_embedder(load_settings()).encode_query(queries)


def chunks_per_folder(sources: list[str], folders: list[str]) -> dict[str, int]:
    """How many chunks came from each documentation folder (sources are ``<name>/<relative path>``)."""
    counts = dict.fromkeys(folders, 0)
    for src in sources:
        rel = src.split("/", 1)[1]
        home = next((f for f in folders if (Path(f) / rel).exists()), "unknown")
        counts[home] = counts.get(home, 0) + 1
    return counts


def run_type(client, kind: str, vectors: np.ndarray, qvecs: np.ndarray, exact: np.ndarray,
             k: int, num_candidates: int) -> dict:
    """Index, merge, measure one format; the index is deleted afterwards."""
    from elasticsearch.helpers import streaming_bulk

    from esrag.index import index_options

    name = f"bench-quant-{kind.replace('_', '-')}-{os.getpid()}"
    client.indices.create(index=name, settings={"number_of_shards": 1, "number_of_replicas": 0,
                                                "refresh_interval": "-1"},
                          mappings={"_source": {"excludes": ["embedding"]}, "properties": {
                              "embedding": {"type": "dense_vector", "dims": vectors.shape[1], "index": True,
                                            "similarity": "cosine", "index_options": index_options(kind)}}})
    try:
        t0 = time.perf_counter()
        actions = ({"_index": name, "_id": str(i), "embedding": v.tolist()} for i, v in enumerate(vectors))
        for ok, item in streaming_bulk(client, actions, chunk_size=1000, raise_on_error=True):
            assert ok, item
        client.indices.refresh(index=name)
        index_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        client.options(request_timeout=3600).indices.forcemerge(index=name, max_num_segments=1)
        client.indices.refresh(index=name)
        merge_s = time.perf_counter() - t1
        n, d = vectors.shape
        stats = client.indices.stats(index=name, metric="store,docs")["indices"][name]["primaries"]
        try:
            usage = client.options(request_timeout=600).indices.disk_usage(
                index=name, run_expensive_tasks=True)
            knn_bytes = int(usage[name]["fields"]["embedding"]["knn_vectors_in_bytes"])
            fields = {f: int(v["total_in_bytes"]) for f, v in usage[name]["fields"].items()}
        except Exception:  # noqa: BLE001 - not every distribution has the disk usage API
            knn_bytes, fields = None, {}
        for q in qvecs[:20]:  # warm-up
            client.search(index=name, knn={"field": "embedding", "query_vector": q.tolist(), "k": k,
                                           "num_candidates": num_candidates}, source=False, size=k)
        wall, took, recalls = [], [], []
        for q, truth in zip(qvecs, exact, strict=True):
            ts = time.perf_counter()
            r = client.search(index=name, knn={"field": "embedding", "query_vector": q.tolist(), "k": k,
                                               "num_candidates": num_candidates}, source=False, size=k)
            wall.append((time.perf_counter() - ts) * 1000)
            took.append(float(r["took"]))
            got = {int(h["_id"]) for h in r["hits"]["hits"]}
            recalls.append(len(got & set(truth.tolist())) / k)
        return {
            "type": kind, "docs": int(stats["docs"]["count"]), "index_seconds": round(index_s, 1),
            "forcemerge_seconds": round(merge_s, 1),
            "store_bytes": int(stats["store"]["size_in_bytes"]), "knn_vectors_bytes": knn_bytes,
            "knn_vectors_bytes_per_vector": round(knn_bytes / n, 1) if knn_bytes else None,
            "disk_usage_fields": fields,
            "store_bytes_per_vector": round(stats["store"]["size_in_bytes"] / n, 1),
            "recall_at_10": round(float(np.mean(recalls)), 4), "recall_at_10_min": round(min(recalls), 2),
            "p50_ms": percentile(wall, 50), "p95_ms": percentile(wall, 95),
            "took_p50_ms": percentile(took, 50), "took_p95_ms": percentile(took, 95),
            "offheap_bytes_formula": int(n * hot_bytes_per_vector(kind, d)),
            "offheap_bytes_per_vector_formula": hot_bytes_per_vector(kind, d),
        }
    finally:
        client.indices.delete(index=name, ignore_unavailable=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--max-chunks", type=int, default=100000)
    ap.add_argument("--max-tokens", type=int, default=64, help="chunk size of the cached corpus")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--num-candidates", type=int, default=100)
    ap.add_argument("--types", nargs="+", default=TYPES)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "quantization.json")
    a = ap.parse_args()

    from esrag.es import make_client
    from esrag.settings import load_settings

    vectors, texts, sources, info = load(a.max_chunks, a.max_tokens)
    queries, qvecs = query_vectors(texts, a.queries)
    exact = np.argsort(-(qvecs @ vectors.T), axis=1)[:, :a.k]
    client = make_client(load_settings(), timeout=600)
    es_version = next(iter(client.nodes.info(metric="os")["nodes"].values()))["version"]
    results = []
    for kind in a.types:
        res = run_type(client, kind, vectors, qvecs, exact, a.k, a.num_candidates)
        print(json.dumps(res), flush=True)
        results.append(res)
    out = {
        "benchmark": "quantization", "machine": machine_info(es_version),
        "corpus": {**info, "vectors": int(vectors.shape[0]), "dims": int(vectors.shape[1]),
                   "chunks_per_folder": chunks_per_folder(sources, info.get("docs", [])),
                   "what": "real chunks of Debian's documentation packages (pages in sorted order), "
                           "all-MiniLM-L6-v2 vectors"},
        "queries": {"count": len(queries), "what": "first 12 words of evenly spaced chunks",
                    "k": a.k, "num_candidates": a.num_candidates, "examples": queries[:3]},
        "ground_truth": "exact cosine top-k in numpy over the same float32 vectors",
        "results": results,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=2))
    print(a.out)


if __name__ == "__main__":
    main()

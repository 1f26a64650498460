"""Quantization benchmark: recall@10, latency, disk and off-heap memory of each vector format.

    .venv/bin/python bench/quantization.py [--max-chunks 100000] [--max-tokens 64] [--queries 200]
    .venv/bin/python bench/quantization.py --curve [--candidates 50 100 ...] [--oversample 0 2 ...]

``--curve``: the dense recall curve of the default format (int8_hnsw) on an index with
esrag's own chunk mapping (text, stemmed text, vector): recall@10 and p50/p95 of the kNN
leg and of the hybrid msearch over num_candidates x rescore_vector oversample, before
(a few points) and after a force-merge to one segment (timed).

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
from bench.real_chunks import load, load_prefix  # noqa: E402

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


def bulk_chunks(client, index: str, vectors: np.ndarray, texts: list[str], sources: list[str]) -> float:
    """Load the chunks into an esrag chunk index as a large ingest does (refresh off, text,
    stemmed text and vector per chunk); seconds taken."""
    from elasticsearch.helpers import streaming_bulk

    from esrag.stemming import stem_text

    def actions():
        for i, (v, t, src) in enumerate(zip(vectors, texts, sources, strict=True)):
            yield {"_index": index, "_id": str(i), "chunk_id": str(i), "doc_id": src, "source": src,
                   "chunk_no": i, "text": t, "text_stemmed": stem_text(t, "english"), "embedding": v.tolist()}

    t0 = time.perf_counter()
    client.indices.put_settings(index=index, settings={"refresh_interval": "-1"})
    for ok, item in streaming_bulk(client, actions(), chunk_size=1000, max_chunk_bytes=8 * 2**20,
                                   raise_on_error=True):
        assert ok, item
    client.indices.put_settings(index=index, settings={"refresh_interval": None})
    client.indices.refresh(index=index)
    return time.perf_counter() - t0


def measure_point(client, index: str, qtexts: list[str], qvecs: np.ndarray, exact: np.ndarray,
                  num_candidates: int, oversample: float, window: int) -> dict:
    """Recall@10 and latency of one (num_candidates, oversample) point: the kNN leg as `esrag
    search --mode dense -k 10` sends it, and the hybrid msearch (BM25 + kNN, ``window`` each)
    as query/retrieval.py builds it; the kNN leg's recall@10 is also read off the hybrid's
    k=``window`` kNN answer."""
    from esrag.stemming import query_terms, stem_text
    from query.retrieval import bm25_body, knn_body

    k = exact.shape[1]
    dense_ms, dense_took, dense_recall, hybrid_ms, leg_recall = [], [], [], [], []
    for text, q, truth in zip(qtexts, qvecs, exact, strict=True):
        truth_ids = {str(i) for i in truth}
        body = knn_body(q.tolist(), k, num_candidates, None, oversample)
        t0 = time.perf_counter()
        r = client.search(index=index, **body)
        dense_ms.append((time.perf_counter() - t0) * 1000)
        dense_took.append(float(r["took"]))
        dense_recall.append(len({h["_id"] for h in r["hits"]["hits"]} & truth_ids) / k)
        terms = query_terms(text, "english")
        searches: list[dict] = []
        for b in (bm25_body(terms, stem_text(terms, "english"), window, None),
                  knn_body(q.tolist(), window, num_candidates, None, oversample)):
            searches += [{"index": index}, b]
        t0 = time.perf_counter()
        res = client.msearch(searches=searches)["responses"]
        hybrid_ms.append((time.perf_counter() - t0) * 1000)
        assert all("error" not in x for x in res), res
        leg_recall.append(len({h["_id"] for h in res[1]["hits"]["hits"][:k]} & truth_ids) / k)
    return {
        "num_candidates": num_candidates, "oversample": oversample,
        "recall_at_10": round(float(np.mean(dense_recall)), 4),
        "dense_p50_ms": percentile(dense_ms, 50), "dense_p95_ms": percentile(dense_ms, 95),
        "dense_took_p50_ms": percentile(dense_took, 50),
        "hybrid_p50_ms": percentile(hybrid_ms, 50), "hybrid_p95_ms": percentile(hybrid_ms, 95),
        "hybrid_leg_recall_at_10": round(float(np.mean(leg_recall)), 4),
    }


def measure_grid(client, index: str, qtexts: list[str], qvecs: np.ndarray, exact: np.ndarray,
                 grid: list[tuple[int, float]], window: int) -> list[dict]:
    """``measure_point`` over ``grid`` after a warm-up pass of 20 queries per point."""
    out = []
    for nc, os_ in grid:
        measure_point(client, index, qtexts[:20], qvecs[:20], exact[:20], nc, os_, window)  # warm-up
        res = measure_point(client, index, qtexts, qvecs, exact, nc, os_, window)
        print(json.dumps(res), flush=True)
        out.append(res)
    return out


def run_curve(client, vectors: np.ndarray, texts: list[str], sources: list[str], qtexts: list[str],
              qvecs: np.ndarray, exact: np.ndarray, grid: list[tuple[int, float]],
              before_grid: list[tuple[int, float]]) -> dict:
    """Dense recall curve of the default format on an esrag chunk index (esrag's own mapping):
    ``before_grid`` as the bulk load left it, force-merge to one segment (timed), ``grid``."""
    from esrag.embedder import get_embedder
    from esrag.index import ensure_index
    from esrag.optimize import force_merge, segment_count
    from esrag.settings import load_settings

    settings = load_settings(index=f"bench-recall-{os.getpid()}")
    embedder = get_embedder(settings)
    index = ensure_index(client, settings, embedder.info)
    try:
        load_s = bulk_chunks(client, index, vectors, texts, sources)
        before = {"segments": segment_count(client, index),
                  "points": measure_grid(client, index, qtexts, qvecs, exact, before_grid,
                                         settings.hybrid_window)}
        merge = force_merge(client, settings.index, 1)
        after = {"segments": merge.segments_after,
                 "points": measure_grid(client, index, qtexts, qvecs, exact, grid, settings.hybrid_window)}
        te = []
        for q in qtexts[:50]:
            t0 = time.perf_counter()
            embedder.encode_query([q])
            te.append((time.perf_counter() - t0) * 1000)
        return {"type": settings.vector_index_type, "index": "esrag chunk mapping (vectors also in _source)",
                "docs": merge.docs, "load_seconds": round(load_s, 1),
                "forcemerge_seconds": merge.seconds, "segments_before_merge": merge.segments_before,
                "query_embed_p50_ms": percentile(te, 50), "hybrid_window": settings.hybrid_window,
                "before_merge": before, "after_merge": after}
    finally:
        client.indices.delete(index=index, ignore_unavailable=True)


def parse_grid(spec: list[str]) -> list[tuple[int, float]]:
    """``["100:0", "400:3"]`` -> [(100, 0.0), (400, 3.0)]."""
    return [(int(p.split(":")[0]), float(p.split(":")[1])) for p in spec]


CURVE_CANDIDATES = [50, 100, 200, 400, 800]
CURVE_OVERSAMPLE = [0.0, 2.0, 3.0, 5.0]
BEFORE_MERGE_GRID = ["100:0", "100:3", "200:2", "400:0", "400:3"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--max-chunks", type=int, default=100000)
    ap.add_argument("--max-tokens", type=int, default=64, help="chunk size of the cached corpus")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--num-candidates", type=int, default=100)
    ap.add_argument("--types", nargs="+", default=TYPES)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "quantization.json")
    ap.add_argument("--curve", action="store_true",
                    help="measure the dense recall curve of the default format instead of the formats; "
                         "written under 'dense_recall' of --out, the rest of the file kept")
    ap.add_argument("--candidates", type=int, nargs="+", default=CURVE_CANDIDATES)
    ap.add_argument("--oversample", type=float, nargs="+", default=CURVE_OVERSAMPLE)
    ap.add_argument("--before-merge", nargs="+", default=BEFORE_MERGE_GRID,
                    help="NUM_CANDIDATES:OVERSAMPLE points measured before the force-merge")
    ap.add_argument("--first", type=int, default=0,
                    help="use the first N chunks of a --max-chunks run whose vectors are still being made")
    a = ap.parse_args()

    from esrag.es import make_client
    from esrag.settings import load_settings

    if a.first:
        vectors, texts, sources, info = load_prefix(a.max_chunks, a.max_tokens, a.first)
    else:
        vectors, texts, sources, info = load(a.max_chunks, a.max_tokens)
    queries, qvecs = query_vectors(texts, a.queries)
    exact = np.argsort(-(qvecs @ vectors.T), axis=1)[:, :a.k]
    client = make_client(load_settings(), timeout=600)
    es_version = next(iter(client.nodes.info(metric="os")["nodes"].values()))["version"]
    if a.curve:
        grid = [(nc, o) for nc in a.candidates for o in a.oversample]
        machine = machine_info(es_version)
        result = run_curve(client, vectors, texts, sources, queries, qvecs, exact, grid,
                           parse_grid(a.before_merge))
        machine["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
        old = json.loads(a.out.read_text()) if a.out.exists() else {"benchmark": "quantization"}
        old["dense_recall"] = {
            "machine": machine,
            "corpus": {**info, "vectors": int(vectors.shape[0]), "dims": int(vectors.shape[1]),
                       "chunks_per_folder": chunks_per_folder(sources, info.get("docs", []))},
            "queries": {"count": len(queries), "what": "first 12 words of evenly spaced chunks", "k": a.k,
                        "examples": queries[:3]},
            "ground_truth": "exact cosine top-k in numpy over the same float32 vectors",
            "what": "recall_at_10: kNN k=10 as `esrag search --mode dense` sends it; hybrid_*: the "
                    "BM25 + kNN msearch of query/retrieval.py (hybrid_window each), client round trip "
                    "without query embedding (query_embed_p50_ms); hybrid_leg_recall_at_10: the first "
                    "10 of that kNN leg",
            "result": result,
        }
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(old, indent=2))
        print(a.out)
        return
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

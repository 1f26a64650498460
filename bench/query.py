"""Query latency benchmark: hybrid retrieval p50/p95, overhead over raw msearch, rerank and generation cost.

Index: paragraphs of Python's HTML docs (Debian python3.11-doc), repeated with a copy
number until --chunks. Only --embedded distinct paragraphs are embedded for real; every
other chunk reuses one of those vectors plus small Gaussian noise (renormalized). Queries
are real paragraph openings. Writes bench/results/query.json.

    .venv/bin/python -m bench.query --chunks 100000 --embedded 5000 --queries 200
"""

from __future__ import annotations

import argparse
import html
import json
import os
import platform
import re
import statistics
import time
import uuid
from pathlib import Path

import numpy as np
from elasticsearch.helpers import bulk

from esrag.embedder import get_embedder
from esrag.es import make_client
from esrag.index import ensure_index, wait_for_count
from esrag.settings import load_settings
from esrag.stemming import stem_text
from query.retrieval import bm25_body, knn_body, retrieve

DOCS = Path("/usr/share/doc/python3.11/html")


def paragraphs(limit: int) -> list[tuple[str, str]]:
    out = []
    for page in sorted(DOCS.rglob("*.html")):
        for raw in re.findall(r"<p>(.*?)</p>", page.read_text(errors="ignore"), flags=re.S):
            text = " ".join(html.unescape(re.sub(r"<[^>]+>", "", raw)).split())
            if len(text) > 80:
                out.append((str(page.relative_to(DOCS)), text))
                if len(out) >= limit:
                    return out
    return out


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if "model name" in line), "")
    mem = next(int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal"))
    return {"cpus": os.cpu_count(), "cpu_model": cpu, "ram_gib": round(mem / 2**20, 1),
            "python": platform.python_version(), "load_avg_at_start": os.getloadavg()}


def pct(values: list[float], p: float) -> float:
    return round(float(np.percentile(values, p)), 2)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chunks", type=int, default=100_000)
    ap.add_argument("--embedded", type=int, default=5000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--keep", action="store_true", help="keep the index afterwards")
    ttft = ap.add_argument_group("time to first token of a warm `esrag serve` /v1/ask (bench/ttft.py)")
    ttft.add_argument("--ttft", action="store_true", help="measure TTFT instead (bench/results/ttft.json)")
    ttft.add_argument("--ttft-configs", default="qwen2.5-coder-0.5b-instruct;smollm2-135m-instruct",
                      help="';'-separated MODEL (or extractive)[,binding=..,threads=N,prompt_threads=N,"
                           "batch=N,context=TOKENS,prefix_cache=true|false]")
    ttft.add_argument("--questions", type=int, default=10)
    ttft.add_argument("--dataset", type=Path, help="BEIR FAQ set (default: python-faq --small, built now)")
    ttft.add_argument("--max-tokens", type=int, default=32)
    ttft.add_argument("--timeout", type=float, default=900)
    args = ap.parse_args()
    if args.ttft:
        from bench import ttft as ttft_bench

        ttft_bench.main(args.ttft_configs.split(";"), args.questions, args.dataset, args.max_tokens,
                        args.timeout)
        return

    settings = load_settings(index=f"bench-query-{uuid.uuid4().hex[:8]}")
    es = make_client(settings, timeout=120)
    embedder = get_embedder(settings)
    index = ensure_index(es, settings, embedder.info)
    nodes = es.nodes.info(filter_path="nodes.*.version")["nodes"]
    report: dict = {"machine": machine(), "es_version": next(iter(nodes.values()))["version"]}
    try:
        paras = paragraphs(args.embedded)
        t = time.perf_counter()
        vecs = embedder.encode_document([p for _, p in paras])
        embed_s = time.perf_counter() - t
        rng = np.random.default_rng(0)

        def actions():
            for i in range(args.chunks):
                j = i % len(paras)
                copy = i // len(paras)
                src, text = paras[j]
                v = vecs[j] if copy == 0 else vecs[j] + rng.normal(0, 0.02, vecs.shape[1]).astype("float32")
                v = v / np.linalg.norm(v)
                doc_id = f"{src}#{copy}"
                yield {"_index": index, "_id": f"{doc_id}:{j}", "_source": {
                    "chunk_id": f"{doc_id}:{j}", "doc_id": doc_id, "source": src, "title": src,
                    "chunk_no": j, "start": 0, "end": len(text), "text": text,
                    "text_stemmed": stem_text(text, "english"), "model": embedder.name,
                    "embedding": v.tolist(), "meta": {"copy": str(copy)}}}

        t = time.perf_counter()
        bulk(es, actions(), chunk_size=1000, request_timeout=300)
        es.indices.refresh(index=index)
        es.indices.forcemerge(index=index, max_num_segments=1, request_timeout=1800)
        count = wait_for_count(es, index, args.chunks, timeout=120)
        index_s = time.perf_counter() - t

        queries = [" ".join(p.split()[:8]) for _, p in paras[:: max(1, len(paras) // args.queries)]]
        queries = queries[: args.queries]
        for q in queries[:10]:  # warm up
            retrieve(settings, q, mode="hybrid", k=args.k, client=es, embedder=embedder)
        esrag_ms, direct_ms, es_only_ms = [], [], []
        for q in queries:
            t = time.perf_counter()
            r = retrieve(settings, q, mode="hybrid", k=args.k, client=es, embedder=embedder)
            esrag_ms.append((time.perf_counter() - t) * 1000)
            es_only_ms.append(r.timings_ms["es_ms"])
            # the same two requests, sent directly (embedding included, no fusion/parsing)
            t = time.perf_counter()
            v = embedder.encode_query([q])[0].tolist()
            es.msearch(searches=[{"index": index},
                                 bm25_body(q, stem_text(q, "english"), settings.hybrid_window, None),
                                 {"index": index},
                                 knn_body(v, settings.hybrid_window, settings.num_candidates, None)])
            direct_ms.append((time.perf_counter() - t) * 1000)

        from query.rerank import get_reranker

        reranker = get_reranker(settings)
        hits = retrieve(settings, queries[0], mode="hybrid", k=50, client=es, embedder=embedder).hits
        reranker.rerank(queries[0], hits[:4])  # warm up
        t = time.perf_counter()
        for q in queries[:5]:
            reranker.rerank(q, hits)
        rerank_ms_per_candidate = (time.perf_counter() - t) * 1000 / (5 * len(hits))

        from query.generation import ask

        gen = [ask(settings, q, k=5, client=es, embedder=embedder).timings_ms for q in queries[:10]]
        report.update({
            "what": f"hybrid (BM25 + kNN in one _msearch, RRF) without rerank, k={args.k}",
            "index": {"chunks": count, "distinct_embedded_paragraphs": len(paras),
                      "vectors": "real all-MiniLM-L6-v2 embeddings of the distinct paragraphs; further "
                                 "copies reuse them with N(0, 0.02) noise, renormalized",
                      "text": "paragraphs of /usr/share/doc/python3.11/html, repeated (copy number in meta)",
                      "embed_seconds": round(embed_s, 1), "index_seconds": round(index_s, 1)},
            "queries": len(queries),
            "hybrid_ms": {"p50": pct(esrag_ms, 50), "p95": pct(esrag_ms, 95),
                          "mean": round(statistics.mean(esrag_ms), 2)},
            "es_msearch_ms_inside": {"p50": pct(es_only_ms, 50), "p95": pct(es_only_ms, 95)},
            "direct_client_ms": {"p50": pct(direct_ms, 50), "p95": pct(direct_ms, 95)},
            "overhead_ratio_p50": round(pct(esrag_ms, 50) / pct(direct_ms, 50), 3),
            "rerank": {"model": reranker.name, "kind": reranker.scorer.kind,
                       "ms_per_candidate": round(rerank_ms_per_candidate, 2), "candidates": len(hits)},
            "generation_extractive": {"generate_ms_p50": pct([g["generate_ms"] for g in gen], 50),
                                      "ms_per_piece_p50": pct([g["generate_ms"] / max(1, g["pieces"])
                                                               for g in gen], 50)},
        })
    finally:
        if not args.keep:
            es.indices.delete(index=index, ignore_unavailable=True)
    out = Path(__file__).parent / "results" / "query.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

"""Retrieval metrics: chunk hits collapsed to a document run, scored with ir-measures."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from typing import Any

import ir_measures
from ir_measures import RR, R, nDCG

# Output key -> ir-measures measure. Names are the JSON contract of `esrag eval --json`.
MEASURES = {"ndcg@10": nDCG @ 10, "recall@100": R @ 100, "mrr@10": RR @ 10}
METRIC_KEYS = (*MEASURES, "p50_ms")


def collapse_to_docs(hits: Iterable[Any], depth: int = 1000) -> dict[str, float]:
    """Document run from chunk hits: a document scores as its best chunk; at most ``depth`` docs."""
    best: dict[str, float] = {}
    for hit in hits:
        doc_id = str(hit.doc_id)
        score = float(hit.score)
        if doc_id not in best or score > best[doc_id]:
            best[doc_id] = score
    ranked = sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))[:depth]
    return dict(ranked)


def rank_scores(run: Mapping[str, float]) -> dict[str, float]:
    """Replace scores by descending rank-derived scores, so ties in fused scores keep the hit order."""
    n = len(run)
    return {doc: float(n - i) for i, doc in enumerate(run)}


def evaluate(qrels: Mapping[str, Mapping[str, int]], run: Mapping[str, Mapping[str, float]],
             ) -> dict[str, float]:
    """Mean nDCG@10, Recall@100 and MRR@10 over every judged query (a query with no hits scores 0)."""
    qrel_rows = [
        ir_measures.Qrel(qid, did, int(grade))
        for qid, docs in qrels.items() for did, grade in docs.items()
    ]
    run_rows = [
        ir_measures.ScoredDoc(qid, did, float(score))
        for qid, docs in run.items() for did, score in docs.items()
    ]
    per_query: dict[str, dict[str, float]] = {qid: {} for qid in qrels}
    for m in ir_measures.iter_calc(list(MEASURES.values()), qrel_rows, run_rows):
        per_query.setdefault(m.query_id, {})[str(m.measure)] = float(m.value)
    out: dict[str, float] = {}
    for key, measure in MEASURES.items():
        values = [per_query.get(qid, {}).get(str(measure), 0.0) for qid in qrels]
        out[key] = round(sum(values) / len(values), 4) if values else 0.0
    return out


def p50(latencies_ms: list[float]) -> float:
    """Median latency in milliseconds, rounded to 0.1 ms."""
    return round(statistics.median(latencies_ms), 1) if latencies_ms else 0.0

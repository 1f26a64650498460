"""Why each hit ranks where it does: BM25, dense, hybrid and hybrid+rerank side by side.

The search workbench shows this. Both legs run once (one msearch, as deep as the hybrid
window and the rerank depth need); every mode's list is cut from them with the same fusion
code as :func:`query.retrieval.retrieve`, so the hybrid column is what `esrag search` returns.
Each hit carries both legs' rank, raw score and normalized score (as the configured fusion
sees it), and the hybrid rank it came from when reranked.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from esrag.settings import Settings
from esrag.stemming import query_terms, stem_text
from query import fusion
from query.filters import filter_clauses
from query.retrieval import (
    MAX_K,
    _msearch,
    bm25_body,
    default_client,
    knn_body,
    query_vector,
    resolve_index,
    to_hit,
)

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

    from esrag.embedder import Embedder

MODES = ("bm25", "dense", "hybrid", "hybrid+rerank")


def _leg(pairs: list[tuple[str, float]], norms: dict[str, float]) -> dict[str, dict[str, float]]:
    return {d: {"rank": r, "raw": round(s, 6), "norm": round(norms[d], 6)}
            for r, (d, s) in enumerate(pairs, start=1)}


def compare(
    settings: Settings,
    query: str,
    *,
    k: int = 10,
    filters: dict[str, str] | None = None,
    rerank: bool = True,
    client: Elasticsearch | None = None,
    embedder: Embedder | None = None,
) -> dict[str, Any]:
    """Every mode's top ``k`` for ``query`` with per-leg scores, the fusion used, and timings."""
    from esrag.errors import EsragError

    t0 = time.perf_counter()
    if not 1 <= k <= MAX_K:
        raise EsragError(f"k must be between 1 and {MAX_K}, got {k}")
    if not query.strip():
        raise EsragError("the query is empty")
    client = client or default_client(settings)
    filter_clauses(filters)
    index, meta = resolve_index(client, settings)
    timings: dict[str, float] = {}
    size = max(k, settings.hybrid_window, settings.rerank_depth if rerank else 0)

    language = meta.get("stem_language") or settings.stem_language
    terms = query_terms(query, language)
    index, meta, vector = query_vector(client, settings, index, meta, query, embedder, timings)

    ts = time.perf_counter()
    sparse, dense = _msearch(client, settings, index, [
        bm25_body(terms, stem_text(terms, language), size, filters),
        knn_body(vector, size, settings.num_candidates, filters, settings.knn_oversample)])
    timings["es_ms"] = (time.perf_counter() - ts) * 1000

    tf = time.perf_counter()
    from query.tuning import TUNED_KEY, effective_fusion

    fz = effective_fusion(settings, meta)
    method, w = fz["method"], fz["weight_dense"]
    docs = {h["_id"]: h for h in sparse + dense}
    s_pairs = [(h["_id"], float(h["_score"])) for h in sparse]
    d_pairs = [(h["_id"], float(h["_score"])) for h in dense]
    opts: dict[str, Any] = {"rrf_k": settings.rrf_k, "window": settings.hybrid_window}
    # as retrieve(): hybrid fuses max(k, window) per leg; with rerank, max(depth, window)
    depth = max(k, settings.rerank_depth)
    hyb_size, rr_size = max(k, settings.hybrid_window), max(depth, settings.hybrid_window)
    s_win, d_win = s_pairs[:hyb_size], d_pairs[:hyb_size]
    legs = {"bm25": _leg(s_win, fusion.leg_scores(method, s_win, **opts)),
            "dense": _leg(d_win, fusion.leg_scores(method, d_win, **opts))}
    hybrid = fusion.fuse(method, s_win, d_win, w, **opts)[:k]
    timings["fusion_ms"] = (time.perf_counter() - tf) * 1000

    def row(rank: int, doc_id: str, score: float, **extra: Any) -> dict[str, Any]:
        hit = to_hit(docs[doc_id], score)
        return {"rank": rank, "id": doc_id, **hit.to_dict(), "score": round(hit.score, 6),
                "bm25": legs["bm25"].get(doc_id), "dense": legs["dense"].get(doc_id), **extra}

    rows: dict[str, list[dict[str, Any]]] = {
        "bm25": [row(r, d, s) for r, (d, s) in enumerate(s_pairs[:k], start=1)],
        "dense": [row(r, d, s) for r, (d, s) in enumerate(d_pairs[:k], start=1)],
        "hybrid": [row(r, d, s) for r, (d, s) in enumerate(hybrid, start=1)],
    }
    reranker_name = rerank_source = None
    if rerank:
        from query.rerank import get_reranker
        from query.rerank_stored import rerank_hits

        tr = time.perf_counter()
        reranker = get_reranker(settings)
        candidates = fusion.fuse(method, s_pairs[:rr_size], d_pairs[:rr_size], w, **opts)[:depth]
        ids = {to_hit(docs[d], 0.0).chunk_id: (r, d) for r, (d, _) in enumerate(candidates, start=1)}
        done = rerank_hits(client, settings, index, meta, reranker, query,
                           [to_hit(docs[d], s) for d, s in candidates])
        reranked, rerank_source = done.hits, done.source
        timings["rerank_ms"] = (time.perf_counter() - tr) * 1000
        reranker_name = getattr(reranker, "name", None)
        rows["hybrid+rerank"] = [row(r, ids[h.chunk_id][1], h.score, hybrid_rank=ids[h.chunk_id][0])
                                 for r, h in enumerate(reranked[:k], start=1)]
    timings["total_ms"] = (time.perf_counter() - t0) * 1000
    return {
        "query": query, "index": index, "alias": settings.index, "k": k, "filters": filters or {},
        "fusion": {"method": method, "weight_dense": w, "rrf_k": settings.rrf_k,
                   "window": settings.hybrid_window, "source": fz["source"], "tuned": meta.get(TUNED_KEY)},
        "reranker": reranker_name, "rerank_source": rerank_source, "modes": rows,
        "timings_ms": {n: round(v, 2) for n, v in timings.items()},
    }

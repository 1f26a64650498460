"""`esrag tune INDEX`: the fusion x dense-weight sweep of `esrag eval`, on the index's own judgments.

No re-ingest: the judged queries run against the live alias for every (fusion, weight)
pair, scored with the eval metrics (documents, graded qrels). The best pair by nDCG@10
(then MRR@10; ties keep grid order) is reported, and with ``apply`` stored in the index's
``_meta`` (see query/tuning.py), which hybrid retrieval then uses for that index.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from esrag.errors import ConfigError, EsragError
from esrag.settings import Settings

FUSIONS = ("dbsf", "rrf", "weighted")
WEIGHTS = (0.2, 0.4, 0.5, 0.6, 0.8, 0.9)


class CachedQueryEmbedder:
    """Wraps an embedder so each query text is encoded once across the whole sweep."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.info = inner.info
        self.name = getattr(inner, "name", self.info.name)
        self._cache: dict[str, Any] = {}

    def encode_query(self, texts: list[str], **kwargs: Any) -> Any:
        import numpy as np

        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            for t, v in zip(missing, self.inner.encode_query(missing, **kwargs), strict=True):
                self._cache[t] = v
        return np.stack([self._cache[t] for t in texts])

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def parse_grid(fusions: str | None, weights: str | None) -> tuple[list[str], list[float]]:
    """The fusion methods and weights to sweep (comma-separated flags, defaults when None)."""
    fs = [f.strip() for f in fusions.split(",") if f.strip()] if fusions else list(FUSIONS)
    bad = [f for f in fs if f not in FUSIONS]
    if bad or not fs:
        raise ConfigError(f"--fusions: unknown fusion {bad[0] if bad else ''!r}; use {', '.join(FUSIONS)}")
    try:
        ws = [float(w) for w in weights.split(",") if w.strip()] if weights else list(WEIGHTS)
    except ValueError:
        raise ConfigError(f"--weights: not a comma-separated list of numbers: {weights!r}") from None
    if not ws or any(not 0.0 <= w <= 1.0 for w in ws):
        raise ConfigError("--weights: each weight must lie between 0 and 1")
    return fs, ws


def tune(settings: Settings, *, fusions: Sequence[str] = FUSIONS, weights: Sequence[float] = WEIGHTS,
         apply: bool = False, client: Any = None, embedder: Any = None,
         progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Sweep fusion x weight on ``settings.index``'s judgments; store the best when ``apply``."""
    from esrag.embedder import get_embedder
    from query.eval.beir import Dataset
    from query.eval.runner import score_modes, with_settings
    from query.judgments import list_judgments, to_qrels
    from query.retrieval import default_client, resolve_index
    from query.tuning import TUNED_KEY, effective_fusion, store_tuned

    client = client or default_client(settings)
    index, meta = resolve_index(client, settings, fresh=True)
    rows = list_judgments(client, settings.index)
    queries, qrels = to_qrels(rows)
    judged = {q: docs for q, docs in qrels.items() if any(g > 0 for g in docs.values())}
    if not judged:
        raise EsragError(f"index {settings.index!r} has no query with a hit marked relevant; "
                         "mark hits in the search workbench (/dashboard/search) first")
    dataset = Dataset(name=settings.index, path=settings.cache_dir,  # no corpus: nothing is ingested
                      queries={q: queries[q] for q in judged}, qrels=judged)
    cached = CachedQueryEmbedder(embedder or get_embedder(settings))
    results = []
    for method in fusions:
        for w in weights:
            run_settings = with_settings(settings, fusion=method, hybrid_weight_dense=w)
            scores = score_modes(run_settings, dataset, ["hybrid"], client=client, embedder=cached)["hybrid"]
            results.append({"fusion": method, "weight_dense": w, **scores})
            if progress:
                progress(f"  {method} weight {w}: nDCG@10 {scores['ndcg@10']:.4f}")
    best = max(results, key=lambda r: (r["ndcg@10"], r["mrr@10"]))  # max keeps the first of ties
    before = effective_fusion(settings, meta)
    tuned = {"fusion": best["fusion"], "hybrid_weight_dense": best["weight_dense"],
             "ndcg_at_10": best["ndcg@10"], "queries": len(judged), "judgments": len(rows),
             "tuned_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if apply:
        store_tuned(client, index, tuned)
        resolve_index(client, settings, fresh=True)  # this process sees it at once
    return {"index": settings.index, "concrete_index": index, "queries": len(judged), "judgments": len(rows),
            "results": results, "best": tuned, "before": {**before, "tuned": meta.get(TUNED_KEY)},
            "applied": apply}

"""Run an eval set: ingest its corpus into its own index, run every query per mode, score."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from esrag.errors import ConfigError, EsragError
from esrag.settings import Settings, with_updates
from query.eval.beir import Dataset
from query.eval.metrics import collapse_to_docs, evaluate, p50, rank_scores

MODES = ("bm25", "dense", "hybrid", "hybrid+rerank")
DEFAULT_MODE = "hybrid"
DOC_DEPTH = 100          # documents per query in the run (Recall@100)
CHUNK_DEPTH = 300        # chunks retrieved per query, collapsed to at most DOC_DEPTH documents
# Settings that change what is indexed: sweeping them re-ingests into a separate index.
REINGEST_KEYS = frozenset({
    "chunk_max_tokens", "chunk_overlap_tokens", "chunk_min_tokens", "embed_model", "embed_model_path",
    "text_analyzer", "stem_language", "vector_index_type", "embed_runtime", "embed_precision",
})
SWEEP_KEYS = frozenset({
    "chunk_max_tokens", "chunk_overlap_tokens", "chunk_min_tokens", "fusion", "rrf_k", "hybrid_weight_dense",
    "num_candidates", "rerank_depth", "hybrid_window", "embed_model", "text_analyzer",
    "embed_runtime", "embed_precision", "knn_oversample",
})


def parse_modes(mode: str) -> list[str]:
    """``all`` or a comma-separated list of modes, validated."""
    modes = list(MODES) if mode == "all" else [m.strip() for m in mode.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise ConfigError(f"unknown mode {','.join(bad) or mode!r}; use {', '.join(MODES)} or all")
    return modes


with_settings = with_updates  # a validated copy of settings with updates (esrag/settings.py)


def parse_sweep(spec: str) -> tuple[str, list[str]]:
    """``key=v1,v2`` -> (key, [v1, v2]); the key must be a retrieval or chunking setting."""
    key, sep, values = spec.partition("=")
    key = key.strip().lower()
    vals = [v.strip() for v in values.split(",") if v.strip()]
    if not sep or not vals:
        raise ConfigError(f"--sweep wants KEY=V1,V2,..., got {spec!r}")
    if key not in SWEEP_KEYS or key not in Settings.model_fields:
        known = ", ".join(sorted(SWEEP_KEYS & set(Settings.model_fields)))
        raise ConfigError(f"cannot sweep {key!r}; sweepable: {known}")
    return key, vals


def eval_index(dataset: Dataset, index: str | None = None, suffix: str = "") -> str:
    """The alias an eval set is ingested under: ``eval-<name>`` unless given, plus a sweep suffix."""
    base = index or f"eval-{dataset.name}"
    return f"{base}-{suffix}" if suffix else base


def ingest_corpus(settings: Settings, dataset: Dataset, *, client: Any = None, embedder: Any = None) -> Any:
    """Ingest corpus.jsonl into ``settings.index`` (unchanged documents are skipped)."""
    from ingest.pipeline import ingest_files

    summary = ingest_files([dataset.corpus_path], settings, client=client, embedder=embedder)
    if summary.failed:
        first = summary.failed[0]
        err = first.get("error") if isinstance(first, dict) else first
        raise EsragError(f"{len(summary.failed)} corpus document(s) failed to ingest, first: {err}")
    return summary


def rerank_top(reranker: Any, query: str, hits: list[Any], depth: int,
               rerank: Callable[[str, list[Any]], list[Any]] | None = None) -> list[Any]:
    """Rerank the first ``depth`` hits (with ``rerank`` when given, else ``reranker.rerank``);
    deeper hits follow in their first-stage order, scored below."""
    head = (rerank or reranker.rerank)(query, hits[:depth])
    floor = min((float(h.score) for h in head), default=0.0)
    tail = [replace(h, score=floor - 1.0 - i) for i, h in enumerate(hits[depth:])]
    return [*head, *tail]


def run_mode(settings: Settings, dataset: Dataset, mode: str, *, client: Any = None, embedder: Any = None,
             progress: Callable[[str], None] | None = None, stats: dict[str, int] | None = None,
             ) -> tuple[dict[str, dict[str, float]], list[float]]:
    """Document run (query -> doc -> score) and per-query latencies in ms for one mode.

    ``stats`` receives ``reranked`` and ``stored``: hits reranked, and how many of them with
    passage vectors stored at ingest (ESRAG_RERANK_VECTORS)."""
    from query.retrieval import default_client, resolve_index, search

    base, rerank = ("hybrid", True) if mode == "hybrid+rerank" else (mode, False)
    reranker = None
    if rerank:
        from query.rerank import get_reranker

        reranker = get_reranker(settings)
    stats = stats if stats is not None else {}
    stats.update(reranked=0, stored=0)
    rclient = client or default_client(settings)

    def rerank(text: str, head: list[Any]) -> list[Any]:
        from query.rerank_stored import rerank_hits

        index, meta = resolve_index(rclient, settings)
        done = rerank_hits(rclient, settings, index, meta, reranker, text, head)
        stats["reranked"] += len(head)
        stats["stored"] += done.stored
        return done.hits

    run: dict[str, dict[str, float]] = {}
    latencies: list[float] = []
    total = len(dataset.queries)
    every = max(1, total // 20)  # about twenty progress lines per mode
    for done, (qid, text) in enumerate(dataset.queries.items(), start=1):
        t0 = time.perf_counter()
        hits = search(settings, text, mode=base, k=CHUNK_DEPTH, rerank=False, client=client,
                      embedder=embedder)
        if reranker is not None:
            hits = rerank_top(reranker, text, hits, settings.rerank_depth, rerank)
        latencies.append((time.perf_counter() - t0) * 1000)
        run[qid] = rank_scores(collapse_to_docs(hits, depth=DOC_DEPTH))
        if progress and (done % every == 0 or done == total):
            progress(f"  {mode}: {done}/{total} queries")
    return run, latencies


def score_modes(settings: Settings, dataset: Dataset, modes: Sequence[str], *, client: Any = None,
                embedder: Any = None, progress: Callable[[str], None] | None = None,
                ) -> dict[str, dict[str, float]]:
    """Metrics per mode: ndcg@10, recall@100, mrr@10, p50_ms."""
    results: dict[str, dict[str, float]] = {}
    for mode in modes:
        if progress:
            progress(f"running {len(dataset.queries)} queries, mode {mode}")
        stats: dict[str, int] = {}
        run, lat = run_mode(settings, dataset, mode, client=client, embedder=embedder, progress=progress,
                            stats=stats)
        results[mode] = {**evaluate(dataset.qrels, run), "p50_ms": p50(lat)}
        if stats.get("reranked"):  # the second stage's tail, and the share scored with stored vectors
            results[mode]["p95_ms"] = round(float(np.percentile(lat, 95)), 1)
            results[mode]["rerank_stored"] = round(stats["stored"] / stats["reranked"], 4)
    return results


def evaluate_dataset(settings: Settings, dataset: Dataset, modes: Sequence[str], *, index: str | None = None,
                     client: Any = None, embedder: Any = None,
                     progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Ingest (or reuse) the eval index and score each mode; the `--json` object."""
    run_settings = with_settings(settings, index=eval_index(dataset, index))
    if progress:
        progress(f"ingesting {dataset.corpus_path} into {run_settings.index}")
    ingest_corpus(run_settings, dataset, client=client, embedder=embedder)
    results = score_modes(run_settings, dataset, modes, client=client, embedder=embedder, progress=progress)
    return {"dataset": dataset.name, "queries": len(dataset.queries), "results": results}


def sweep(settings: Settings, dataset: Dataset, key: str, values: Sequence[str], modes: Sequence[str], *,
          index: str | None = None, client: Any = None, embedder: Any = None,
          progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Score each value of one setting; indexing settings get an index of their own per value."""
    out: dict[str, Any] = {}
    for value in values:
        suffix = ""
        if key in REINGEST_KEYS:
            suffix = re.sub(r"[^a-z0-9_\-]+", "-", f"{key.replace('_', '')}-{value}".lower())
        probe = with_settings(settings, **{key: value})
        run_settings = with_settings(probe, index=eval_index(dataset, index, suffix))
        if progress:
            progress(f"{key}={value}: index {run_settings.index}")
        emb = None if key.startswith("embed_") else embedder
        ingest_corpus(run_settings, dataset, client=client, embedder=emb)
        out[value] = score_modes(run_settings, dataset, modes, client=client, embedder=emb, progress=progress)
    return {"dataset": dataset.name, "queries": len(dataset.queries), "sweep": {"key": key, "results": out}}

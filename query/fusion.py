"""Client-side fusion of ranked lists: reciprocal rank fusion and normalized weighted sums."""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def rrf(
    rankings: Sequence[Sequence[str]], k: int = 60, weights: Sequence[float] | None = None
) -> list[tuple[str, float]]:
    """Reciprocal rank fusion: score(d) = sum over lists of w / (k + rank), ranks from 1.

    ``weights`` (one per list, default 1 each) give the weighted variant. Ties keep the
    order in which ids were first seen (list by list, rank by rank).
    """
    weights = weights if weights is not None else [1.0] * len(rankings)
    scores: dict[str, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for rank, doc_id in enumerate(ranking, start=1):
            scores[doc_id] = scores.get(doc_id, 0.0) + weight / (k + rank)
    order = {d: i for i, d in enumerate(scores)}
    return sorted(scores.items(), key=lambda item: (-item[1], order[item[0]]))


def min_max(scores: Sequence[tuple[str, float]]) -> dict[str, float]:
    """Scores scaled to [0, 1] within one list; a list whose scores are all equal maps to 1."""
    if not scores:
        return {}
    values = [s for _, s in scores]
    lo, hi = min(values), max(values)
    if hi == lo:
        return {d: 1.0 for d, _ in scores}
    return {d: (s - lo) / (hi - lo) for d, s in scores}


def weighted(
    sparse: Sequence[tuple[str, float]], dense: Sequence[tuple[str, float]], weight_dense: float = 0.5
) -> list[tuple[str, float]]:
    """Weighted sum of min-max normalized scores; an id missing from a list scores 0 there."""
    return _weighted_sum(sparse, dense, min_max(sparse), min_max(dense), weight_dense)


def _weighted_sum(
    sparse: Sequence[tuple[str, float]],
    dense: Sequence[tuple[str, float]],
    ns: dict[str, float],
    nd: dict[str, float],
    weight_dense: float,
) -> list[tuple[str, float]]:
    """(1 - w) * ns + w * nd over the ids of both lists (0 where missing); ties keep first-seen order."""
    ids = list(dict.fromkeys([d for d, _ in sparse] + [d for d, _ in dense]))
    fused = {d: (1.0 - weight_dense) * ns.get(d, 0.0) + weight_dense * nd.get(d, 0.0) for d in ids}
    order = {d: i for i, d in enumerate(ids)}
    return sorted(fused.items(), key=lambda item: (-item[1], order[item[0]]))


def dbsf_normalize(scores: Sequence[tuple[str, float]], window: int | None = None) -> dict[str, float]:
    """Distribution-based normalization: (s - (mean - 3 sd)) / (6 sd), mean and sd of the top ``window``.

    Taking the statistics from the head of the list only makes the normalization independent
    of how deep the list was fetched. A list whose head scores are all equal maps to 1.
    """
    if not scores:
        return {}
    head = [s for _, s in scores[:window]] if window else [s for _, s in scores]
    mean, sd = statistics.fmean(head), statistics.pstdev(head)
    if sd == 0.0:
        return {d: 1.0 for d, _ in scores}
    low = mean - 3.0 * sd
    return {d: (s - low) / (6.0 * sd) for d, s in scores}


def dbsf(
    sparse: Sequence[tuple[str, float]],
    dense: Sequence[tuple[str, float]],
    weight_dense: float = 0.5,
    window: int | None = None,
) -> list[tuple[str, float]]:
    """Distribution-based score fusion: weighted sum of ``dbsf_normalize``d scores.

    An id missing from a list scores 0 there. Unlike min-max, one outlier score does not
    squash the rest of its list, and score gaps (how much better the top hit is) survive.
    """
    return _weighted_sum(sparse, dense, dbsf_normalize(sparse, window), dbsf_normalize(dense, window),
                         weight_dense)


def fuse(
    method: str,
    sparse: Sequence[tuple[str, float]],
    dense: Sequence[tuple[str, float]],
    weight_dense: float,
    *,
    rrf_k: int = 60,
    window: int | None = None,
) -> list[tuple[str, float]]:
    """Fuse the BM25 and kNN lists by ``method`` (dbsf, weighted or rrf) with the dense leg's weight.

    For rrf, 0.5 is classic RRF (both lists weigh 1); other weights scale the lists' terms.
    """
    if method == "dbsf":
        return dbsf(sparse, dense, weight_dense, window)
    if method == "weighted":
        return weighted(sparse, dense, weight_dense)
    if method == "rrf":
        return rrf([[d for d, _ in sparse], [d for d, _ in dense]], rrf_k,
                   weights=[2 * (1 - weight_dense), 2 * weight_dense])
    raise ValueError(f"unknown fusion {method!r}; use dbsf, weighted or rrf")


def leg_scores(
    method: str, scores: Sequence[tuple[str, float]], *, rrf_k: int = 60, window: int | None = None
) -> dict[str, float]:
    """One leg's normalized score per id, as ``method`` sees it before weighting.

    dbsf and weighted: the normalized score; rrf: the unweighted term 1 / (k + rank).
    """
    if method == "dbsf":
        return dbsf_normalize(scores, window)
    if method == "weighted":
        return min_max(scores)
    if method == "rrf":
        return {d: 1.0 / (rrf_k + rank) for rank, (d, _) in enumerate(scores, start=1)}
    raise ValueError(f"unknown fusion {method!r}; use dbsf, weighted or rrf")

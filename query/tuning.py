"""Fusion and dense weight tuned per index from judgments (`esrag tune INDEX --apply`).

The tuned values live in the index's ``_meta.esrag.tuned`` (``fusion``, ``hybrid_weight_dense``,
``ndcg_at_10`` they were chosen at, ``queries``, ``judgments``, ``tuned_at``). Hybrid retrieval on
that index uses them unless ESRAG_FUSION or ESRAG_HYBRID_WEIGHT_DENSE (or a flag, or an explicit
settings override) sets the value: an explicit setting always wins.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

    from esrag.settings import Settings

TUNED_KEY = "tuned"


def effective_fusion(settings: Settings, meta: dict[str, Any]) -> dict[str, Any]:
    """The fusion method and dense weight hybrid retrieval uses on an index with ``meta``.

    Returns ``{"method", "weight_dense", "source"}`` where source is ``settings``, ``tuned``
    or ``tuned+settings`` (one value from each).
    """
    tuned = meta.get(TUNED_KEY) or {}
    explicit = settings.model_fields_set
    method, weight = settings.fusion, settings.hybrid_weight_dense
    used = []
    if tuned.get("fusion") in ("dbsf", "rrf", "weighted") and "fusion" not in explicit:
        method = tuned["fusion"]
        used.append("fusion")
    if isinstance(tuned.get("hybrid_weight_dense"), int | float) and "hybrid_weight_dense" not in explicit:
        weight = float(tuned["hybrid_weight_dense"])
        used.append("weight")
    source = "tuned" if len(used) == 2 else ("tuned+settings" if used else "settings")
    return {"method": method, "weight_dense": weight, "source": source}


def store_tuned(client: Elasticsearch, index: str, tuned: dict[str, Any]) -> None:
    """Write ``tuned`` into the concrete index's ``_meta.esrag.tuned`` (the rest of _meta kept)."""
    mapping = client.indices.get_mapping(index=index)
    meta = dict(mapping[index]["mappings"].get("_meta", {}))
    meta["esrag"] = {**meta.get("esrag", {}), TUNED_KEY: tuned}
    client.indices.put_mapping(index=index, meta=meta)

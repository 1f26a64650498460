"""Rerank with the passage vectors stored at ingest (``ESRAG_RERANK_VECTORS``) when the index has them.

The search legs never return the stored vectors (their ``_source`` is a list of the
fields a hit needs); only when reranking are the vectors of the hits to rerank fetched,
by id, in one request. They are used only when the index's ``_meta.esrag.rerank`` record
matches the configured rerank model (model, dimensions, pooling, prompts, precision);
otherwise, and for a cross-encoder, passages are encoded as before. A hit without a stored
vector (indexed before the setting was on) is encoded on the fly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from elasticsearch import ApiError, Elasticsearch, TransportError

from esrag.errors import ServiceUnavailable
from esrag.es import unavailable_message
from esrag.rerank_model import META_KEY, RERANK_VECTOR_FIELD, model_name, vectors_match
from esrag.settings import Settings
from query.hits import Hit
from query.rerank import BiEncoderReranker, HitReranker

STORED = "stored"  # every passage vector came from the index
ENCODED = "encoded"  # every passage was encoded at query time (or a cross-encoder scored the pairs)
MIXED = "mixed"  # some hits had no stored vector


@dataclass
class Reranked:
    """Reranked hits, and where the passage vectors came from."""

    hits: list[Hit]
    source: str
    stored: int  # hits scored with a stored vector


def rerank_by_default(settings: Settings, meta: dict[str, Any], k: int) -> bool:
    """Whether a request that does not say reranks: ``ESRAG_RERANK`` when true or false; with
    ``auto`` (the default) when the index records stored vectors of the configured rerank
    model (by name; ``rerank_hits`` checks the full record) and ``k`` is at most
    ``ESRAG_RERANK_REQUEST_MAX``: then rerank is a dot product, not a model run per passage."""
    if isinstance(settings.rerank, bool):
        return settings.rerank
    recorded = meta.get(META_KEY) or {}
    return recorded.get("model") == model_name(settings.rerank_model) and k <= settings.rerank_request_max


def usable(reranker: HitReranker, meta: dict[str, Any]) -> bool:
    """True when ``meta`` (an index's ``_meta.esrag``) records stored vectors of ``reranker``'s model."""
    scorer = reranker.scorer
    return isinstance(scorer, BiEncoderReranker) and vectors_match(meta.get(META_KEY), scorer.embedder.info)


def fetch_vectors(client: Elasticsearch, settings: Settings, index: str, hits: list[Hit],
                  ) -> list[np.ndarray | None]:
    """The stored rerank vector of each hit (None where the chunk has none), one request."""
    try:
        resp = client.mget(index=index, ids=[h.chunk_id for h in hits], source_includes=[RERANK_VECTOR_FIELD],
                           realtime=False)
    except (TransportError, ApiError) as exc:
        raise ServiceUnavailable(unavailable_message(settings, exc)) from None
    out: list[np.ndarray | None] = []
    for doc in resp["docs"]:
        values = (doc.get("_source") or {}).get(RERANK_VECTOR_FIELD) if doc.get("found") else None
        out.append(np.asarray(values, dtype=np.float32) if values else None)
    return out


def rerank_hits(client: Elasticsearch, settings: Settings, index: str, meta: dict[str, Any],
                reranker: HitReranker, query: str, hits: list[Hit]) -> Reranked:
    """``hits`` reranked, with the stored vectors of ``index`` where they are of the rerank model."""
    if not hits or not usable(reranker, meta):
        return Reranked(reranker.rerank(query, hits), ENCODED, 0)
    vectors = fetch_vectors(client, settings, index, hits)
    stored = sum(v is not None for v in vectors)
    source = STORED if stored == len(hits) else ENCODED if stored == 0 else MIXED
    return Reranked(reranker.rerank(query, hits, vectors), source, stored)

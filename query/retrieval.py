"""Retrieval: BM25, dense kNN and hybrid (client-side fusion), with filters and optional rerank."""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from elasticsearch import ApiError, Elasticsearch, NotFoundError, TransportError

from esrag.errors import EsragError, ModelMismatch, ServiceUnavailable
from esrag.es import check_shards, make_client, scan_all
from esrag.index import STEMMED_FIELD, TEXT_FIELD, VECTOR_FIELD, alias_target, check_model, index_meta
from esrag.settings import MAX_K, Settings
from esrag.stemming import query_terms, stem_text
from query import fusion
from query.filters import filter_clauses
from query.hits import Hit, Retrieval

if TYPE_CHECKING:
    from esrag.embedder import Embedder

MODES = ("bm25", "dense", "hybrid")
SOURCE_FIELDS = [
    "chunk_id", "doc_id", "source", "title", TEXT_FIELD, "start", "end", "chunk_no", "headings", "meta",
]
# Field boosts of the BM25 query: title and headings weigh more than body text.
BM25_FIELDS = [f"{TEXT_FIELD}^1.0", "title^2.0", "headings^1.5"]
STEMMED_BOOST = 1.0
INDEX_CACHE_SECONDS = 10.0


class IndexMissing(EsragError):
    """The alias to search does not exist yet."""


@dataclass
class _IndexInfo:
    name: str
    meta: dict[str, Any]
    expires: float


_index_cache: dict[tuple[str, str], _IndexInfo] = {}
_clients: dict[str, Elasticsearch] = {}
_lock = threading.Lock()


def default_client(settings: Settings) -> Elasticsearch:
    """A client per ES URL and credentials, shared within the process."""
    # secrets dump as "**********": key on their digests, or two passwords would share a client
    secrets = [hashlib.sha256(v.get_secret_value().encode()).hexdigest() if v is not None else ""
               for v in (settings.es_password, settings.es_api_key)]
    key = settings.model_dump_json(include={"es_url", "es_username", "es_ca_certs", "es_verify_certs",
                                            "es_request_timeout"}) + ",".join(secrets)
    with _lock:
        if key not in _clients:
            _clients[key] = make_client(settings)
        return _clients[key]


def unavailable(settings: Settings, exc: Exception) -> ServiceUnavailable:
    """The one-line error for an unreachable Elasticsearch."""
    from esrag.es import unavailable_message

    return ServiceUnavailable(unavailable_message(settings, exc))


def resolve_index(client: Elasticsearch, settings: Settings, *, fresh: bool = False) -> tuple[str, dict]:
    """The concrete index behind the alias and its ``_meta.esrag`` (cached a few seconds)."""
    key = (settings.es_url, settings.index)
    now = time.monotonic()
    info = _index_cache.get(key)
    if info is not None and info.expires > now and not fresh:
        return info.name, info.meta
    try:
        target = alias_target(client, settings.index)
        if target is None:
            raise IndexMissing(f"index {settings.index!r} does not exist; ingest documents first")
        meta = index_meta(client, target)
    except NotFoundError:
        raise IndexMissing(f"index {settings.index!r} does not exist; ingest documents first") from None
    except (TransportError, ApiError) as exc:
        raise unavailable(settings, exc) from None
    _index_cache[key] = _IndexInfo(target, meta, now + INDEX_CACHE_SECONDS)
    return target, meta


def bm25_body(query: str, stemmed: str, size: int, filters: dict[str, str] | None) -> dict[str, Any]:
    """Search body of the BM25 leg: text, title, headings, and the stemmed field; filters in bool."""
    should: list[dict[str, Any]] = [
        {"multi_match": {"query": query, "fields": BM25_FIELDS, "type": "best_fields", "tie_breaker": 0.3}}
    ]
    if stemmed:
        should.append({"match": {STEMMED_FIELD: {"query": stemmed, "boost": STEMMED_BOOST}}})
    return {
        "size": size,
        "_source": SOURCE_FIELDS,
        "track_total_hits": False,
        "query": {"bool": {"should": should, "minimum_should_match": 1, "filter": filter_clauses(filters)}},
    }


def knn_body(vector: list[float], size: int, num_candidates: int, filters: dict[str, str] | None,
             oversample: float = 0.0) -> dict:
    """Search body of the kNN leg; filters go inside ``knn.filter`` so they apply before top-k.

    ``oversample`` (ESRAG_KNN_OVERSAMPLE, 0: off) asks Elasticsearch to gather ``oversample * size``
    candidates on the quantized vectors and re-score them with the float vectors (``rescore_vector``).
    """
    knn: dict[str, Any] = {
        "field": VECTOR_FIELD,
        "query_vector": vector,
        "k": size,
        "num_candidates": min(10000, max(num_candidates, size)),
    }
    if oversample:
        knn["rescore_vector"] = {"oversample": oversample}
    clauses = filter_clauses(filters)
    if clauses:
        knn["filter"] = {"bool": {"filter": clauses}}
    return {"size": size, "_source": SOURCE_FIELDS, "track_total_hits": False, "knn": knn}


def to_hit(doc: dict[str, Any], score: float) -> Hit:
    """A Hit from an ES hit's ``_source``."""
    src = doc.get("_source", {})
    headings = src.get("headings") or []
    if isinstance(headings, str):
        headings = [headings]
    return Hit(
        chunk_id=str(src.get("chunk_id", doc.get("_id", ""))),
        doc_id=str(src.get("doc_id", "")),
        source=str(src.get("source", "")),
        title=str(src.get("title") or ""),
        text=str(src.get(TEXT_FIELD, "")),
        score=float(score),
        start=int(src.get("start") or 0),
        end=int(src.get("end") or 0),
        chunk_no=int(src.get("chunk_no") or 0),
        headings=list(headings),
        meta=dict(src.get("meta") or {}),
    )


def _msearch(client: Elasticsearch, settings: Settings, index: str, bodies: list[dict]) -> list[list[dict]]:
    searches: list[dict[str, Any]] = []
    for body in bodies:
        searches += [{"index": index}, body]
    try:
        resp = client.msearch(searches=searches)
    except (TransportError, ApiError) as exc:
        if isinstance(exc, ApiError) and exc.meta.status < 500 and exc.meta.status not in (401, 403):
            raise EsragError(f"search failed: {exc.message}") from None
        raise unavailable(settings, exc) from None
    out = []
    for r in resp["responses"]:
        if "error" in r:
            reason = r["error"].get("reason") if isinstance(r["error"], dict) else r["error"]
            if r.get("status") == 404:
                raise IndexMissing(f"index {settings.index!r} does not exist; ingest documents first")
            raise EsragError(f"search failed: {reason}")
        check_shards(r, "search")  # a partial answer would silently miss documents
        out.append(r["hits"]["hits"])
    return out



def query_vector(client: Elasticsearch, settings: Settings, index: str, meta: dict[str, Any], query: str,
                 embedder: Embedder | None, timings: dict[str, float]) -> tuple[str, dict, list[float]]:
    """(index, meta, the query's vector), embedded with the index's own configuration (or
    ``embedder``, which must match it); the time it took goes into ``timings["embed_ms"]``.

    A mismatch is checked once more against the alias's current index: the alias may have
    moved (`esrag reindex`) since ``resolve_index`` cached it."""
    from esrag.embedder import get_embedder, settings_for_index

    for attempt in (1, 2):
        chosen = embedder if embedder is not None else get_embedder(settings_for_index(settings, meta))
        try:
            check_model(meta, chosen.info, index)
            break
        except ModelMismatch:
            if attempt == 2:
                raise
            index, meta = resolve_index(client, settings, fresh=True)
    te = time.perf_counter()
    vector = chosen.encode_query([query])[0].tolist()
    timings["embed_ms"] = (time.perf_counter() - te) * 1000
    return index, meta, vector


def retrieve(
    settings: Settings,
    query: str,
    *,
    mode: str = "hybrid",
    k: int = 10,
    filters: dict[str, str] | None = None,
    rerank: bool | None = None,
    client: Elasticsearch | None = None,
    embedder: Embedder | None = None,
) -> Retrieval:
    """Run one retrieval and return hits with per-stage timings."""
    t0 = time.perf_counter()
    if mode not in MODES:
        raise EsragError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
    if not 1 <= k <= MAX_K:
        raise EsragError(f"k must be between 1 and {MAX_K}, got {k}")
    if not query.strip():
        raise EsragError("the query is empty")
    client = client or default_client(settings)
    filter_clauses(filters)  # validate before any I/O
    index, meta = resolve_index(client, settings)
    if rerank is None:
        from query.rerank_stored import rerank_by_default

        rerank = rerank_by_default(settings, meta, k)
    timings: dict[str, float] = {}
    depth = max(k, settings.rerank_depth) if rerank else k
    size = max(depth, settings.hybrid_window) if mode == "hybrid" else depth

    bodies: list[dict] = []
    if mode in ("bm25", "hybrid"):
        language = meta.get("stem_language") or settings.stem_language
        terms = query_terms(query, language)
        bodies.append(bm25_body(terms, stem_text(terms, language), size, filters))
    if mode in ("dense", "hybrid"):
        index, meta, vector = query_vector(client, settings, index, meta, query, embedder, timings)
        bodies.append(knn_body(vector, size, settings.num_candidates, filters, settings.knn_oversample))

    ts = time.perf_counter()
    results = _msearch(client, settings, index, bodies)
    timings["es_ms"] = (time.perf_counter() - ts) * 1000

    tf = time.perf_counter()
    if mode == "hybrid":
        sparse, dense = results
        docs = {h["_id"]: h for h in sparse + dense}
        s_pairs = [(h["_id"], float(h["_score"])) for h in sparse]
        d_pairs = [(h["_id"], float(h["_score"])) for h in dense]
        from query.tuning import effective_fusion

        fz = effective_fusion(settings, meta)
        fused = fusion.fuse(fz["method"], s_pairs, d_pairs, fz["weight_dense"],
                            rrf_k=settings.rrf_k, window=settings.hybrid_window)
        hits = [to_hit(docs[d], score) for d, score in fused[:depth]]
    else:
        hits = [to_hit(h, h["_score"]) for h in results[0][:depth]]
    timings["fusion_ms"] = (time.perf_counter() - tf) * 1000

    rerank_source = None
    if rerank and hits:
        from query.rerank import get_reranker
        from query.rerank_stored import rerank_hits

        tr = time.perf_counter()
        reranked = rerank_hits(client, settings, index, meta, get_reranker(settings), query, hits)
        hits, rerank_source = reranked.hits, reranked.source
        timings["rerank_ms"] = (time.perf_counter() - tr) * 1000
    timings["total_ms"] = (time.perf_counter() - t0) * 1000
    return Retrieval(hits=hits[:k], timings_ms={n: round(v, 2) for n, v in timings.items()}, index=index,
                     rerank_source=rerank_source)


def search(
    settings: Settings,
    query: str,
    *,
    mode: str = "hybrid",
    k: int = 10,
    filters: dict[str, str] | None = None,
    rerank: bool | None = None,
    client: Elasticsearch | None = None,
    embedder: Embedder | None = None,
) -> list[Hit]:
    """Top ``k`` chunks for ``query`` by ``mode`` (bm25, dense, hybrid), filtered, optionally reranked."""
    return retrieve(
        settings, query, mode=mode, k=k, filters=filters, rerank=rerank, client=client, embedder=embedder
    ).hits


def document_chunks(settings: Settings, doc_id: str, *, client: Elasticsearch | None = None) -> list[Hit]:
    """Every chunk of one document, in chunk order (empty when the document is unknown)."""
    client = client or default_client(settings)
    index, _ = resolve_index(client, settings)
    try:
        docs = list(scan_all(client, index, {"query": _document_query(doc_id), "_source": SOURCE_FIELDS},
                             size=500, what="the document look-up"))
    except (TransportError, ApiError) as exc:
        raise unavailable(settings, exc) from None
    hits = [to_hit(d, 0.0) for d in docs]
    hits.sort(key=lambda h: (h.chunk_no, h.start))
    return hits


def document_page(
    settings: Settings, doc_id: str, *, after: int = -1, limit: int = 100,
    client: Elasticsearch | None = None,
) -> tuple[list[Hit], int | None]:
    """Up to ``limit`` chunks of one document with ``chunk_no > after``, in chunk order, and the
    ``after`` of the next page (None on the last page)."""
    client = client or default_client(settings)
    index, _ = resolve_index(client, settings)
    query = {"bool": {"filter": [*_document_query(doc_id)["bool"]["filter"],
                                 {"range": {"chunk_no": {"gt": after}}}]}}
    try:
        resp = client.search(index=index, query=query, size=limit + 1, _source=SOURCE_FIELDS,
                             sort=[{"chunk_no": "asc"}, {"start": "asc"}], track_total_hits=False)
    except (TransportError, ApiError) as exc:
        raise unavailable(settings, exc) from None
    hits = [to_hit(d, 0.0) for d in resp["hits"]["hits"]]
    if len(hits) > limit:
        return hits[:limit], hits[limit - 1].chunk_no
    return hits, None


def _document_query(doc_id: str) -> dict[str, Any]:
    """The chunks of ``doc_id`` within the caller's scope."""
    return {"bool": {"filter": filter_clauses({"doc_id": doc_id})}}

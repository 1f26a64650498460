"""Relevance judgments per index, kept in Elasticsearch beside the index they judge.

One small index per alias, ``<alias>-judgments``; one document per (query, chunk) with a
graded relevance (0 = not relevant, 1+ = relevant), its id a hash of both, so marking a hit
again overwrites the earlier mark. Elasticsearch rather than Redis: judgments are durable
evaluation data about this index's content, they belong in the same snapshots and
backups, and must not share the fate of the broker (whose queues may be flushed or
configured without persistence). Judgments of a document are kept at chunk level and
raised to the document (the best grade of its chunks) for BEIR qrels, which score documents.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from esrag.errors import EsragError

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

    from esrag.settings import Settings

MAX_GRADE = 3
MAPPING = {
    "dynamic": "strict",
    "properties": {
        "query": {"type": "keyword"}, "query_id": {"type": "keyword"}, "chunk_id": {"type": "keyword"},
        "doc_id": {"type": "keyword"}, "relevance": {"type": "integer"}, "updated": {"type": "date"},
    },
}


def judgments_index(alias: str) -> str:
    """The index holding ``alias``'s judgments."""
    return f"{alias}-judgments"


def query_id(query: str) -> str:
    """A stable id of a query's text (BEIR query ids)."""
    return "q" + hashlib.sha1(" ".join(query.split()).encode()).hexdigest()[:12]


def _ensure(client: Elasticsearch, alias: str) -> str:
    from elasticsearch import BadRequestError

    name = judgments_index(alias)
    if not client.indices.exists(index=name):
        try:
            client.indices.create(index=name, mappings=MAPPING, settings={"number_of_shards": 1})
        except BadRequestError as exc:
            if exc.error != "resource_already_exists_exception":
                raise
    return name


def put_judgment(client: Elasticsearch, alias: str, query: str, chunk_id: str, doc_id: str,
                 relevance: int) -> dict[str, Any]:
    """Store (or overwrite) one judgment; readable as soon as this returns."""
    query = " ".join(query.split())
    if not query:
        raise EsragError("a judgment needs the query it was made for")
    if not 0 <= relevance <= MAX_GRADE:
        raise EsragError(f"relevance must be between 0 and {MAX_GRADE}, got {relevance}")
    doc = {"query": query, "query_id": query_id(query), "chunk_id": chunk_id, "doc_id": doc_id,
           "relevance": int(relevance), "updated": int(time.time() * 1000)}
    key = hashlib.sha1(f"{query}\0{chunk_id}".encode()).hexdigest()
    client.index(index=_ensure(client, alias), id=key, document=doc, refresh="wait_for")
    return doc


def list_judgments(client: Elasticsearch, alias: str, query: str | None = None) -> list[dict[str, Any]]:
    """Every judgment of ``alias`` (of one query when given), ordered by query then chunk."""
    from elasticsearch.helpers import scan

    name = judgments_index(alias)
    if not client.indices.exists(index=name):
        return []
    q = {"term": {"query": " ".join(query.split())}} if query is not None else {"match_all": {}}
    rows = [h["_source"] for h in scan(client, index=name, query={"query": q}, size=1000)]
    return sorted(rows, key=lambda r: (r["query"], r["chunk_id"]))


def to_qrels(rows: list[dict[str, Any]]) -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    """BEIR queries (id -> text) and document qrels (id -> doc -> best grade of its judged chunks)."""
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    for r in rows:
        queries[r["query_id"]] = r["query"]
        docs = qrels.setdefault(r["query_id"], {})
        docs[r["doc_id"]] = max(docs.get(r["doc_id"], 0), int(r["relevance"]))
    return queries, qrels


def export_beir(client: Elasticsearch, settings: Settings, out: Path) -> dict[str, int]:
    """Write ``settings.index``'s judgments as a BEIR folder: the judged documents (text rebuilt
    from their chunks), the judged queries, and qrels/test.tsv. Returns the counts."""
    from query.documents import document_view
    from query.eval.beir import write_dataset
    from query.retrieval import document_chunks

    rows = list_judgments(client, settings.index)
    if not rows:
        raise EsragError(f"index {settings.index!r} has no judgments yet; mark hits in the search workbench")
    queries, qrels = to_qrels(rows)
    corpus = []
    for doc_id in sorted({r["doc_id"] for r in rows}):
        chunks = document_chunks(settings, doc_id, client=client)
        if chunks:  # else deleted since it was judged
            corpus.append({"_id": doc_id, "title": chunks[0].title,
                           "text": document_view(chunks)["text"].strip()})
    counts = write_dataset(out, corpus, [{"_id": q, "text": queries[q]} for q in sorted(queries)],
                           [(q, d, g) for q in sorted(qrels) for d, g in sorted(qrels[q].items())])
    return {**counts, "judgments": len(rows)}

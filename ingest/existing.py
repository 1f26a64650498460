"""What the index already holds for a set of documents (looked up before embedding)."""

from __future__ import annotations

from elasticsearch import Elasticsearch
from elasticsearch.helpers import scan


def doc_hashes(client: Elasticsearch, index: str, doc_ids: list[str]) -> dict[str, set[str]]:
    """doc_id -> doc_hash values of its first chunk (the marker written last), in one request."""
    if not doc_ids:
        return {}
    resp = client.search(
        index=index, size=len(doc_ids) * 2, track_total_hits=False,
        query={"bool": {"filter": [{"terms": {"doc_id": doc_ids}}, {"term": {"chunk_no": 0}}]}},
        source=["doc_id", "doc_hash"],
    )
    found: dict[str, set[str]] = {}
    for hit in resp["hits"]["hits"]:
        src = hit["_source"]
        found.setdefault(src["doc_id"], set()).add(src.get("doc_hash", ""))
    return found


def chunk_ids(client: Elasticsearch, index: str, doc_ids: list[str]) -> dict[str, set[str]]:
    """doc_id -> ids of all its chunks in the index."""
    found: dict[str, set[str]] = {d: set() for d in doc_ids}
    if not doc_ids:
        return found
    query = {"query": {"terms": {"doc_id": doc_ids}}, "_source": ["doc_id"]}
    for hit in scan(client, index=index, query=query, size=1000):
        found.setdefault(hit["_source"]["doc_id"], set()).add(hit["_id"])
    return found

"""What the index already holds for a set of documents (looked up before embedding).

Every look-up goes by ``doc_id`` (and, for documents scoped to their file, ``source``), never
through one particular chunk, and refuses a partial answer: a look-up that misses a shard
would make a changed document look new and leave its old chunks behind.
"""

from __future__ import annotations

from elasticsearch import Elasticsearch

from esrag.es import scan_all

DocKey = tuple[str, str | None]  # (doc_id, source) for a file-scoped document, (doc_id, None) otherwise


def _matches(key: DocKey, src: dict) -> bool:
    return key[1] is None or src.get("source") == key[1]


def doc_hashes(client: Elasticsearch, index: str, keys: list[DocKey]) -> dict[DocKey, set[str]]:
    """key -> doc_hash values of its completion markers (chunk 0)."""
    if not keys:
        return {}
    ids = sorted({k[0] for k in keys})
    body = {"query": {"bool": {"filter": [{"terms": {"doc_id": ids}}, {"term": {"chunk_no": 0}}]}},
            "_source": ["doc_id", "source", "doc_hash"]}
    by_id: dict[str, list[dict]] = {}
    for hit in scan_all(client, index, body, what="the look-up of stored document hashes"):
        by_id.setdefault(hit["_source"]["doc_id"], []).append(hit["_source"])
    found: dict[DocKey, set[str]] = {}
    for key in keys:
        hashes = {s.get("doc_hash", "") for s in by_id.get(key[0], []) if _matches(key, s)}
        if hashes:
            found[key] = hashes
    return found


def chunk_ids(client: Elasticsearch, index: str, keys: list[DocKey]) -> dict[DocKey, set[str]]:
    """key -> ids of all its chunks in the index (whatever state a crashed write left)."""
    found: dict[DocKey, set[str]] = {k: set() for k in keys}
    if not keys:
        return found
    wanted: dict[str, list[DocKey]] = {}
    for key in keys:
        wanted.setdefault(key[0], []).append(key)
    body = {"query": {"terms": {"doc_id": sorted(wanted)}}, "_source": ["doc_id", "source"]}
    for hit in scan_all(client, index, body, what="the look-up of stored chunks"):
        src = hit["_source"]
        for key in wanted.get(src["doc_id"], []):
            if _matches(key, src):
                found[key].add(hit["_id"])
    return found

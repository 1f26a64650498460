"""The real node: BM25, kNN, filtered kNN and delete on an int8_hnsw dense_vector index."""

from __future__ import annotations

import urllib.request

import numpy as np
from elasticsearch import Elasticsearch
from elasticsearch.helpers import bulk

from esrag.embedder import ModelInfo
from esrag.index import build_mapping, delete_matching, wait_for_count
from esrag.settings import Settings

DIMS = 8


def _vec(i: int) -> list[float]:
    v = np.zeros(DIMS, dtype=np.float32)
    v[i % DIMS] = 1.0
    v[(i + 1) % DIMS] = 0.25
    return (v / np.linalg.norm(v)).tolist()


def _index(es: Elasticsearch, settings: Settings) -> str:
    name = f"{settings.index}-raw"
    es.indices.create(index=name, **build_mapping(settings, ModelInfo("unit-test", DIMS)))
    texts = [
        "the quick brown fox jumps over the lazy dog",
        "elasticsearch stores dense vectors in an hnsw graph",
        "redis keeps the task queue in memory with an append only file",
        "a lazy afternoon with a good book",
        "vectors are quantised to int8 to save memory",
        "the fox and the hound",
    ]
    actions = [
        {
            "_index": name,
            "_id": f"d{i}",
            "chunk_id": f"d{i}",
            "doc_id": f"doc{i}",
            "source": f"/corpus/{i}.txt",
            "text": t,
            "meta": {"lang": "en", "group": "odd" if i % 2 else "even"},
            "embedding": _vec(i),
        }
        for i, t in enumerate(texts)
    ]
    ok, errors = bulk(es, actions, refresh="wait_for")
    assert ok == 6 and errors == []
    return name


def test_health_and_product_header(es: Elasticsearch, settings: Settings) -> None:
    with urllib.request.urlopen(f"{settings.es_url}/_cluster/health", timeout=10) as resp:
        assert resp.headers["X-Elastic-Product"] == "Elasticsearch"
    health = es.cluster.health()
    assert health["status"] in ("green", "yellow")


def test_mapping_is_int8_hnsw_cosine(es: Elasticsearch, settings: Settings) -> None:
    name = _index(es, settings)
    field = es.indices.get_mapping(index=name)[name]["mappings"]["properties"]["embedding"]
    assert field["type"] == "dense_vector"
    assert field["similarity"] == "cosine"
    assert field["index_options"]["type"] == "int8_hnsw"
    assert field["dims"] == DIMS


def test_bm25_match(es: Elasticsearch, settings: Settings) -> None:
    name = _index(es, settings)
    res = es.search(index=name, query={"match": {"text": "lazy fox"}}, size=10)
    ids = [h["_id"] for h in res["hits"]["hits"]]
    assert set(ids) == {"d0", "d3", "d5"}
    assert ids[0] == "d0"  # the only document with both terms


def test_knn(es: Elasticsearch, settings: Settings) -> None:
    name = _index(es, settings)
    res = es.search(
        index=name,
        knn={"field": "embedding", "query_vector": _vec(2), "k": 3, "num_candidates": 10},
        size=3,
    )
    ids = [h["_id"] for h in res["hits"]["hits"]]
    assert ids[0] == "d2"
    assert len(ids) == 3


def test_knn_with_filter_never_returns_filtered_docs(es: Elasticsearch, settings: Settings) -> None:
    name = _index(es, settings)
    res = es.search(
        index=name,
        knn={
            "field": "embedding",
            "query_vector": _vec(2),
            "k": 6,
            "num_candidates": 10,
            "filter": {"term": {"meta.group": "odd"}},
        },
        size=6,
    )
    ids = [h["_id"] for h in res["hits"]["hits"]]
    assert sorted(ids) == ["d1", "d3", "d5"]


def test_delete(es: Elasticsearch, settings: Settings) -> None:
    name = _index(es, settings)
    es.delete(index=name, id="d0", refresh="wait_for")
    assert wait_for_count(es, name, 5) == 5
    res = es.search(index=name, query={"match": {"text": "quick"}})
    assert res["hits"]["total"]["value"] == 0
    assert delete_matching(es, name, {"term": {"meta.group": "odd"}}) == 3
    assert wait_for_count(es, name, 2) == 2

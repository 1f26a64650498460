"""Dense recall against the real Elasticsearch: rescore_vector oversampling on the int8 index,
and `esrag optimize` (force-merge) on an index of several segments."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
from elasticsearch.helpers import bulk
from query_corpus import corpus_alias

from esrag.embedder import ModelInfo, get_embedder
from esrag.index import VECTOR_FIELD, ensure_index, index_options
from esrag.optimize import segment_count
from query.retrieval import knn_body, search

ESRAG = str(Path(sys.executable).parent / "esrag")
DIMS = 32


def near_duplicates() -> tuple[np.ndarray, np.ndarray]:
    """A query and 240 vectors: 40 within int8 rounding of the query (the closest written last,
    so ties of the quantized scores go to the wrong ones) and 200 random ones that set the range."""
    rng = np.random.default_rng(7)
    query = rng.normal(size=DIMS)
    query /= np.linalg.norm(query)
    near = []
    for i in range(40):
        u = rng.normal(size=DIMS)
        u -= u.dot(query) * query
        v = query + (0.002 + 0.0005 * i) * u / np.linalg.norm(u)
        near.append(v / np.linalg.norm(v))
    far = rng.normal(size=(200, DIMS))
    far /= np.linalg.norm(far, axis=1, keepdims=True)
    return query, np.vstack([np.array(near)[::-1], far])


@pytest.fixture()
def int8_index(es):
    name = f"test-rescore-{uuid.uuid4().hex[:10]}"
    es.indices.create(index=name, mappings={"properties": {VECTOR_FIELD: {
        "type": "dense_vector", "dims": DIMS, "index": True, "similarity": "cosine",
        "index_options": index_options("int8_hnsw")}}})
    yield name
    es.indices.delete(index=name, ignore_unavailable=True)


def test_oversample_rescores_int8_candidates_to_the_exact_top_10(es, int8_index):
    query, vectors = near_duplicates()
    bulk(es, ({"_index": int8_index, "_id": str(i), VECTOR_FIELD: v.tolist()} for i, v in enumerate(vectors)),
         refresh=True)
    exact = [str(i) for i in np.argsort(-(vectors @ query))[:10]]
    assert exact == [str(i) for i in range(39, 29, -1)]

    def top10(oversample: float) -> list[str]:
        body = {**knn_body(query.tolist(), 10, 100, None, oversample), "_source": False}
        return [h["_id"] for h in es.search(index=int8_index, **body)["hits"]["hits"]]

    assert len(set(top10(0.0)) & set(exact)) < 10  # int8 scores cannot tell these apart
    for oversample in (2.0, 3.0, 10.0):
        assert top10(oversample) == exact, oversample


def test_dense_search_with_oversample_returns_the_exact_cosine_order(es):
    with corpus_alias(es) as settings:
        rescored = settings.model_copy(update={"knn_oversample": 3.0})
        query = "the crust of a loaf in the oven"
        hits = search(rescored, query, mode="dense", k=7)
        docs = es.search(index=settings.index, size=10, _source=["chunk_id", VECTOR_FIELD])["hits"]["hits"]
        ids = [d["_source"]["chunk_id"] for d in docs]
        vectors = np.array([d["_source"][VECTOR_FIELD] for d in docs])
        qv = get_embedder(settings).encode_query([query])[0]
        cosine = vectors @ qv / np.linalg.norm(vectors, axis=1) / np.linalg.norm(qv)
        assert [h.chunk_id for h in hits] == [ids[i] for i in np.argsort(-cosine)]
        # rescored with the float vectors: ES's cosine score (1 + cos) / 2, to float precision
        assert [h.score for h in hits] == pytest.approx(sorted((1 + cosine) / 2, reverse=True), abs=1e-5)


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([ESRAG, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "ESRAG_INDEX": "esrag"})


def test_optimize_merges_the_index_behind_the_alias_to_one_segment(es, settings):
    index = ensure_index(es, settings, ModelInfo(name="test-model", dims=4))
    for batch in range(4):  # one refresh per batch: four segments
        bulk(es, ({"_index": index, "_id": f"{batch}-{i}", "chunk_id": f"{batch}-{i}", "text": f"chunk {i}",
                   VECTOR_FIELD: [1.0, float(i), float(batch), 1.0]} for i in range(10)), refresh=True)
    assert segment_count(es, index) == 4
    r = run("optimize", "--index", settings.index, "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert isinstance(out.pop("seconds"), float)
    assert out == {"alias": settings.index, "index": index, "docs": 40, "segments_before": 4,
                   "segments_after": 1, "max_segments": 1}
    assert segment_count(es, index) == 1
    r = run("optimize", "--index", settings.index)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"{index} ({settings.index}): 1 -> 1 segments, 40 chunks, in ")


def test_optimize_user_errors_are_one_line(es, settings):
    r = run("optimize", "--index", settings.index)
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr == f"error: index {settings.index!r} does not exist; ingest documents first\n"
    r = run("optimize", "--index", settings.index, "--max-segments", "0")
    assert (r.returncode, r.stdout) == (2, "")
    assert r.stderr == "error: --max-segments must be at least 1, got 0\n"

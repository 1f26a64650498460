"""Second-stage vectors stored at ingest (ESRAG_RERANK_VECTORS): rerank by dot product, same ranking.

Real Elasticsearch, real all-mpnet-base-v2, real Python FAQ pages. Two aliases hold the
same chunks, one with the stored vectors and one without; hybrid+rerank must rank
identically on both, the first by a dot product with the stored vectors (no passage is
encoded: a spy on the model fails the test if the stored path is bypassed).
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from elasticsearch import Elasticsearch
from elasticsearch.helpers import scan

from esrag.cli import main
from esrag.errors import EsragError
from esrag.index import alias_target, index_meta
from esrag.rerank_model import RERANK_VECTOR_FIELD
from esrag.settings import Settings, load_settings
from ingest.cli import run_ingest
from ingest.reindex import reindex
from query import retrieval
from query.rerank import get_reranker
from query.retrieval import bm25_body, knn_body, retrieve

FAQ = Path("/usr/share/doc/python3.11/html/faq")
FILES = ["gui.html", "installed.html", "windows.html"]
QUERIES = [
    "How do I run a Python program under Windows?",
    "Is there a GUI toolkit for Python?",
    "Why is Python installed on my machine?",
    "How do I make an executable from a Python script?",
    "Can I freeze Tkinter applications?",
]
MPNET_META = {
    "model": "all-mpnet-base-v2", "dims": 768, "similarity": "cosine", "pooling": "mean",
    "query_prompt": "", "document_prompt": "", "precision": "fp32", "runtime": "torch",
    "field": RERANK_VECTOR_FIELD,
}


def _drop(es: Elasticsearch, alias: str) -> None:
    for name in es.indices.get(index=f"{alias}*", expand_wildcards="all", allow_no_indices=True):
        es.indices.delete(index=name, ignore_unavailable=True)


def _sources(es: Elasticsearch, index: str) -> dict[str, dict]:
    return {h["_id"]: h["_source"] for h in scan(es, index=index, query={"query": {"match_all": {}}})}


@pytest.fixture(scope="module")
def corpus(es: Elasticsearch,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, Settings]]:
    """(settings of the alias with stored vectors, settings of the same chunks without them)."""
    folder = tmp_path_factory.mktemp("faq")
    for name in FILES:
        shutil.copy(FAQ / name, folder / name)
    base = f"test-{uuid.uuid4().hex[:10]}"
    stored = load_settings(index=f"{base}-rv").model_copy(update={"rerank_vectors": True})
    plain = load_settings(index=f"{base}-plain")
    try:
        for s in (stored, plain):
            summary = run_ingest([str(folder)], s)
            assert summary.failed == [] and summary.indexed == summary.chunks > 20
        yield stored, plain
    finally:
        _drop(es, base)


def test_mapping_meta_and_vectors_are_the_rerankers(es: Elasticsearch, corpus) -> None:
    stored, plain = corpus
    index = alias_target(es, stored.index)
    props = es.indices.get_mapping(index=index)[index]["mappings"]["properties"]
    assert props[RERANK_VECTOR_FIELD] == {"type": "dense_vector", "dims": 768, "index": False}
    assert index_meta(es, index)["rerank"] == MPNET_META
    plain_index = alias_target(es, plain.index)
    plain_props = es.indices.get_mapping(index=plain_index)[plain_index]["mappings"]["properties"]
    assert RERANK_VECTOR_FIELD not in plain_props
    assert "rerank" not in index_meta(es, plain_index)

    chunks = _sources(es, index)
    assert chunks.keys() == _sources(es, plain_index).keys()
    assert all(len(src[RERANK_VECTOR_FIELD]) == 768 for src in chunks.values())
    # the stored vector is what the reranker computes for the hit's text, to float32 precision
    scorer = get_reranker(stored).scorer
    some = sorted(chunks)[:4]
    expected = scorer.embedder.encode_document([chunks[c]["text"] for c in some])
    for cid, vec in zip(some, expected, strict=True):
        assert np.abs(np.asarray(chunks[cid][RERANK_VECTOR_FIELD], dtype=np.float32) - vec).max() < 1e-5


def test_search_legs_never_return_the_stored_vectors(es: Elasticsearch, corpus) -> None:
    stored, _ = corpus
    index = alias_target(es, stored.index)
    vector = [0.05] * 384
    for body in (bm25_body("python windows", "python window", 50, None), knn_body(vector, 50, 100, None)):
        hits = es.search(index=index, **body)["hits"]["hits"]
        assert len(hits) > 20
        assert all(RERANK_VECTOR_FIELD not in h["_source"] and "embedding" not in h["_source"] for h in hits)


def test_stored_vectors_rank_exactly_as_encoding(es: Elasticsearch, corpus) -> None:
    stored, plain = corpus
    scorer = get_reranker(stored).scorer
    assert scorer is get_reranker(plain).scorer
    encoded: list[str] = []
    real = scorer.embedder._encode

    def spy(texts: list[str]) -> np.ndarray:
        encoded.extend(texts)
        return real(texts)

    for q in QUERIES:
        scorer.cache.clear()  # a warm passage cache would hide encoding
        scorer.embedder._encode = spy
        try:
            got = retrieve(stored, q, mode="hybrid", k=10, rerank=True)
        finally:
            scorer.embedder._encode = real
        assert encoded == [q]  # the query alone: no passage was encoded
        encoded.clear()
        scorer.cache.clear()
        want = retrieve(plain, q, mode="hybrid", k=10, rerank=True)
        assert (got.rerank_source, want.rerank_source) == ("stored", "encoded")
        assert [h.chunk_id for h in got.hits] == [h.chunk_id for h in want.hits]
        assert [h.score for h in got.hits] == pytest.approx([h.score for h in want.hits], abs=1e-5)
        assert "rerank_ms" in got.timings_ms
        plain_hybrid = retrieve(stored, q, mode="hybrid", k=10, rerank=False)
        assert plain_hybrid.rerank_source is None


def test_other_rerank_model_recorded_falls_back_to_encoding(es: Elasticsearch, corpus) -> None:
    stored, plain = corpus
    index = alias_target(es, stored.index)
    meta = index_meta(es, index)
    forged = {**meta, "rerank": {**meta["rerank"], "model": "another-model"}}
    es.indices.put_mapping(index=index, meta={"esrag": forged})
    retrieval._index_cache.clear()
    try:
        got = retrieve(stored, QUERIES[0], mode="hybrid", k=10, rerank=True)
        want = retrieve(plain, QUERIES[0], mode="hybrid", k=10, rerank=True)
        assert got.rerank_source == "encoded"
        assert [h.chunk_id for h in got.hits] == [h.chunk_id for h in want.hits]
    finally:
        es.indices.put_mapping(index=index, meta={"esrag": meta})
        retrieval._index_cache.clear()


def test_vectors_added_later_mix_stored_and_encoded(es: Elasticsearch, settings: Settings,
                                                    tmp_path: Path) -> None:
    """An index ingested without the setting gains the field; its older chunks are encoded on the fly."""
    shutil.copy(FAQ / "installed.html", tmp_path / "installed.html")
    assert run_ingest([str(tmp_path / "installed.html")], settings).failed == []
    old_ids = set(_sources(es, alias_target(es, settings.index)))
    shutil.copy(FAQ / "gui.html", tmp_path / "gui.html")
    on = settings.model_copy(update={"rerank_vectors": True})
    assert run_ingest([str(tmp_path / "gui.html")], on).failed == []
    index = alias_target(es, settings.index)
    assert index_meta(es, index)["rerank"] == MPNET_META
    chunks = _sources(es, index)
    assert {c for c, s in chunks.items() if RERANK_VECTOR_FIELD not in s} == old_ids
    retrieval._index_cache.clear()
    got = retrieve(on, "Why is Python installed on my machine? Is there a GUI toolkit?", mode="hybrid",
                   k=len(chunks), rerank=True)
    assert got.rerank_source == "mixed"
    scorer = get_reranker(on).scorer
    texts = [h.text for h in got.hits]
    assert [h.score for h in got.hits] == pytest.approx(
        scorer.scores("Why is Python installed on my machine? Is there a GUI toolkit?", texts), abs=1e-5)


def test_cross_encoder_with_stored_vectors_is_a_one_line_error(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys,
) -> None:
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from esrag.embedder import resolve_model_path

    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        num_labels=1))
    model.save_pretrained(tmp_path / "ce")
    tokenizer = AutoTokenizer.from_pretrained(str(resolve_model_path("all-MiniLM-L6-v2", None)))
    tokenizer.save_pretrained(tmp_path / "ce")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("Python runs on Windows. " * 20)
    monkeypatch.setenv("ESRAG_RERANK_VECTORS", "true")
    monkeypatch.setenv("ESRAG_RERANK_MODEL", str(tmp_path / "ce"))
    assert main(["ingest", str(tmp_path / "docs"), "--index", settings.index]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"error: ESRAG_RERANK_VECTORS=true needs a bi-encoder rerank model, but ESRAG_RERANK_MODEL "
        f"{tmp_path / 'ce'} is a cross-encoder (it scores query and passage together: no passage vector "
        "to store); set ESRAG_RERANK_VECTORS=false or choose a bi-encoder\n")


@pytest.mark.timeout(600)
def test_reindex_creates_then_keeps_the_vectors(es: Elasticsearch, settings: Settings,
                                                tmp_path: Path) -> None:
    shutil.copy(FAQ / "installed.html", tmp_path / "installed.html")
    assert run_ingest([str(tmp_path)], settings).failed == []
    first = alias_target(es, settings.index)
    n = len(_sources(es, first))
    model = index_meta(es, first)["model"]

    on = settings.model_copy(update={"rerank_vectors": True})
    created = reindex(on, model)  # the same embedder: rebuilt for the rerank vectors alone
    assert (created.rerank_model, created.rerank_encoded, created.chunks) == ("all-mpnet-base-v2", n, n)
    second = alias_target(es, settings.index)
    assert second == created.new_index != first
    assert index_meta(es, second)["rerank"] == MPNET_META
    vectors = {c: s[RERANK_VECTOR_FIELD] for c, s in _sources(es, second).items()}
    assert len(vectors) == n and all(len(v) == 768 for v in vectors.values())
    with pytest.raises(EsragError, match="nothing to reindex"):
        reindex(on, model)

    # another first-stage configuration: the stored rerank vectors are copied, not recomputed
    precision = "fp32" if index_meta(es, second)["precision"] != "fp32" else "int8"
    other = on.model_copy(update={"embed_precision": precision})
    kept = reindex(other, model)
    assert (kept.rerank_model, kept.rerank_encoded, kept.chunks) == ("all-mpnet-base-v2", 0, n)
    third = alias_target(es, settings.index)
    assert index_meta(es, third)["precision"] == precision and index_meta(es, third)["rerank"] == MPNET_META
    assert {c: s[RERANK_VECTOR_FIELD] for c, s in _sources(es, third).items()} == vectors


def test_rerank_is_on_by_default_where_the_index_stores_the_vectors(es: Elasticsearch, corpus) -> None:
    stored, plain = corpus
    assert stored.rerank == plain.rerank == "auto"  # the default
    q = QUERIES[0]
    auto = retrieve(stored, q, mode="hybrid", k=5)
    assert auto.rerank_source == "stored" and "rerank_ms" in auto.timings_ms
    explicit = retrieve(stored, q, mode="hybrid", k=5, rerank=True)
    assert [h.chunk_id for h in auto.hits] == [h.chunk_id for h in explicit.hits]
    # no stored vectors: the default does not rerank (encoding 50 passages per query is too slow)
    off = retrieve(plain, q, mode="hybrid", k=5)
    assert off.rerank_source is None and "rerank_ms" not in off.timings_ms
    assert [h.chunk_id for h in off.hits] == [h.chunk_id for h in retrieve(plain, q, mode="hybrid", k=5,
                                                                          rerank=False).hits]
    # past ESRAG_RERANK_REQUEST_MAX, and with ESRAG_RERANK=false, the default does not rerank either
    assert retrieve(stored, q, mode="hybrid", k=stored.rerank_request_max + 1).rerank_source is None
    assert retrieve(stored.model_copy(update={"rerank": False}), q, mode="hybrid", k=5).rerank_source is None
    # another configured rerank model than the one the vectors were written with: not by default
    other = stored.model_copy(update={"rerank_model": "bge-small-en-v1.5"})
    assert retrieve(other, q, mode="hybrid", k=5).rerank_source is None

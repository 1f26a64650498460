"""Stored rerank vectors: exact float32 round trip, the model record, scoring with stored vectors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from esrag.embedder import ModelInfo
from esrag.errors import ConfigError
from esrag.rerank_model import field_mapping, recorded_info, vector_meta, vector_values, vectors_match
from esrag.settings import load_settings
from query.hits import Hit
from query.rerank import BiEncoderReranker, HitReranker

MPNET = ModelInfo(name="all-mpnet-base-v2", dims=768, precision="fp32", runtime="torch")


def test_vector_values_parse_back_to_the_same_float32() -> None:
    rng = np.random.default_rng(3)
    vec = (rng.standard_normal(768) / 27.7).astype(np.float32)
    back = np.asarray(json.loads(json.dumps(vector_values(vec))), dtype=np.float32)
    assert np.array_equal(back, vec)
    assert max(len(repr(x)) for x in vector_values(vec)) <= 16  # 9 significant digits, not 17


def test_the_record_matches_only_the_same_configuration() -> None:
    meta = vector_meta(MPNET)
    assert meta == {"model": "all-mpnet-base-v2", "dims": 768, "similarity": "cosine", "pooling": "mean",
                    "query_prompt": "", "document_prompt": "", "precision": "fp32", "runtime": "torch",
                    "field": "rerank_vector"}
    assert vectors_match(meta, MPNET)
    assert vectors_match(meta, ModelInfo(name="all-mpnet-base-v2", dims=768, runtime="onnx"))  # runtime free
    assert not vectors_match(None, MPNET) and not vectors_match({}, MPNET)
    assert not vectors_match({**meta, "model": "bge-small-en-v1.5"}, MPNET)
    assert not vectors_match({**meta, "precision": "int8"}, MPNET)
    assert not vectors_match({**meta, "document_prompt": "passage: "}, MPNET)
    assert recorded_info(meta) == MPNET
    assert field_mapping(MPNET) == {"type": "dense_vector", "dims": 768, "index": False}


class FakeEmbedder:
    """Deterministic unit vectors from text lengths; records what it encodes."""

    name = "fake"
    info = ModelInfo(name="fake", dims=3)

    def __init__(self) -> None:
        self.encoded: list[str] = []

    def _vec(self, text: str) -> np.ndarray:
        v = np.array([len(text), text.count("a") + 1, 1.0], dtype=np.float32)
        return v / np.linalg.norm(v)

    def encode_query(self, texts: list[str]) -> np.ndarray:
        self.encoded += texts
        return np.stack([self._vec(t) for t in texts])

    def encode_document(self, texts: list[str]) -> np.ndarray:
        self.encoded += texts
        return np.stack([self._vec(t) for t in texts])


def _hit(cid: str, text: str) -> Hit:
    return Hit(chunk_id=cid, doc_id=cid, source="s", title="", text=text, score=0.0, start=0, end=0,
               chunk_no=0)


@pytest.mark.parametrize("cache_size", [0, 10])
def test_stored_vectors_score_as_encoding_and_missing_ones_are_encoded(cache_size: int) -> None:
    emb = FakeEmbedder()
    reranker = HitReranker(BiEncoderReranker(emb, cache_size))  # type: ignore[arg-type]
    hits = [_hit("a", "aaaa"), _hit("b", "b"), _hit("c", "a banana")]
    want = reranker.rerank("aa", hits)
    emb.encoded.clear()
    stored = [emb._vec(h.text) for h in hits]
    got = reranker.rerank("aa", hits, [stored[0], None, stored[2]])
    assert [h.chunk_id for h in got] == [h.chunk_id for h in want]
    assert [h.score for h in got] == pytest.approx([h.score for h in want], abs=1e-6)
    assert emb.encoded == ["aa"] + (["b"] if cache_size == 0 else [])  # the cache already held "b"
    emb.encoded.clear()
    reranker.rerank("aa", hits, stored)
    assert emb.encoded == ["aa"]  # all stored: the query alone


@pytest.mark.parametrize(("value", "parsed"),
                         [("auto", "auto"), ("true", True), ("false", False), ("1", True)])
def test_rerank_setting_is_auto_or_a_bool(monkeypatch: pytest.MonkeyPatch, value: str,
                                          parsed: object) -> None:
    monkeypatch.setenv("ESRAG_RERANK", value)
    assert load_settings().rerank == parsed


def test_rerank_setting_other_value_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ESRAG_RERANK", "sometimes")
    with pytest.raises(ConfigError, match=r"^invalid setting ESRAG_RERANK: "):
        load_settings()

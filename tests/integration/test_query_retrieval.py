"""Retrieval against the real Elasticsearch: modes, fusion, filters, model check, rerank."""

from __future__ import annotations

import math

import pytest
from query_corpus import N_CHUNKS, corpus_alias

from esrag.embedder import ModelInfo, get_embedder, resolve_model_path
from esrag.errors import ModelMismatch
from esrag.index import ensure_index
from query import fusion
from query.filters import FilterError
from query.retrieval import IndexMissing, search

Q = "how do I read a file line by line"
ALL_CHUNKS = {"python-files#0", "python-files#1", "postgres-vacuum#0", "rust-ownership#0",
              "secret-notes#0", "secret-notes#1", "bread#0"}


@pytest.fixture(scope="module")
def corpus(es):
    with corpus_alias(es) as settings:
        yield settings


def ids(hits):
    return [h.chunk_id for h in hits]


def test_bm25_mode(corpus):
    hits = search(corpus, Q, mode="bm25", k=3)
    assert ids(hits) == ["python-files#0", "secret-notes#0", "secret-notes#1"]
    h = hits[0]
    assert (h.doc_id, h.source, h.title, h.start, h.end, h.chunk_no) == (
        "python-files", "docs/python/files.md", "Python Files", 0, 106, 0)
    assert h.meta == {"lang": "en", "team": "python"} and h.headings == ["Python"]


def test_bm25_uses_stemmed_field(corpus):
    # "reclaiming" only matches "reclaims" through the stemmed field.
    assert ids(search(corpus, "reclaiming", mode="bm25", k=5)) == ["postgres-vacuum#0"]


def test_dense_mode(corpus):
    hits = search(corpus, "the crust of a loaf in the oven", mode="dense", k=2)
    assert ids(hits)[0] == "bread#0"
    assert 0.5 < hits[0].score <= 1.0


def test_hybrid_default_is_dbsf_over_both_legs(corpus):
    assert (corpus.fusion, corpus.hybrid_weight_dense, corpus.hybrid_window) == ("dbsf", 0.8, 50)
    legs = [[(h.chunk_id, h.score) for h in search(corpus, Q, mode=m, k=50)] for m in ("bm25", "dense")]
    expected = fusion.dbsf(legs[0], legs[1], 0.8, 50)
    hits = search(corpus, Q, mode="hybrid", k=7)
    assert ids(hits) == [d for d, _ in expected]
    assert [h.score for h in hits] == pytest.approx([s for _, s in expected])
    assert ids(hits)[0] == "python-files#0" and set(ids(hits)) == ALL_CHUNKS


def test_hybrid_rrf_scores(corpus):
    hits = search(corpus.model_copy(update={"fusion": "rrf"}), Q, mode="hybrid", k=3)
    assert ids(hits) == ["python-files#0", "secret-notes#0", "secret-notes#1"]
    assert hits[0].score == pytest.approx(2 / 61)  # first in both legs


def test_hybrid_weighted(corpus):
    settings = corpus.model_copy(update={"fusion": "weighted", "hybrid_weight_dense": 0.5})
    hits = search(settings, Q, mode="hybrid", k=7)
    assert ids(hits)[0] == "python-files#0"
    assert hits[0].score == pytest.approx(1.0)  # top of both normalized lists
    assert set(ids(hits)) == ALL_CHUNKS


@pytest.mark.parametrize("mode", ["bm25", "dense", "hybrid"])
def test_filtered_document_never_leaks(corpus, mode):
    for filters in ({"meta.team": "python"}, {"doc_id": "python-files"}, {"source": "docs/python/files.md"}):
        hits = search(corpus, "reading files line by line in Python", mode=mode, k=50, filters=filters)
        assert sorted(ids(hits)) == ["python-files#0", "python-files#1"]
    hits = search(corpus, "reading files", mode=mode, k=50,
                  filters={"content_type": "text/markdown", "meta.team": "secret"})
    assert sorted(ids(hits)) == ["secret-notes#0", "secret-notes#1"]
    assert search(corpus, "reading files", mode=mode, k=50, filters={"doc_id": "nope"}) == []


def test_k_larger_than_corpus(corpus):
    for mode in ("bm25", "dense", "hybrid"):
        hits = search(corpus, "the", mode=mode, k=100)
        assert len(hits) <= N_CHUNKS


def test_bad_filter_and_mode(corpus):
    with pytest.raises(FilterError):
        search(corpus, Q, filters={"text": "x"})
    with pytest.raises(Exception, match="unknown mode 'sparse'"):
        search(corpus, Q, mode="sparse")


def test_model_mismatch_refused(es, settings):
    ensure_index(es, settings, ModelInfo(name="other-model", dims=384))
    with pytest.raises(ModelMismatch) as err:
        search(settings, Q, mode="dense")
    message = str(err.value)
    assert message.startswith("index " + settings.index + "-other-model-v1 was built with model "
                              "other-model (384d, fp32) but the configured embedder is "
                              "all-MiniLM-L6-v2 (384d, ")
    assert "run `esrag reindex --model all-MiniLM-L6-v2` to rebuild the index for it" in message


def test_missing_index(settings):
    with pytest.raises(IndexMissing, match="does not exist; ingest documents first"):
        search(settings, Q)


def test_rerank_with_cross_encoder(corpus, tmp_path):
    import torch
    from sentence_transformers import CrossEncoder
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    src = resolve_model_path("all-MiniLM-L6-v2", None)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(str(src), num_labels=1)
    model.save_pretrained(tmp_path / "ce")
    AutoTokenizer.from_pretrained(str(src)).save_pretrained(tmp_path / "ce")
    settings = corpus.model_copy(update={"rerank_model": str(tmp_path / "ce"), "rerank_depth": 7})

    from query.rerank import get_reranker

    assert get_reranker(settings).scorer.kind == "cross-encoder"
    hits = search(settings, Q, mode="hybrid", k=7, rerank=True)
    assert set(ids(hits)) == ALL_CHUNKS
    expected = CrossEncoder(str(tmp_path / "ce")).predict([(Q, h.text) for h in hits])
    assert [h.score for h in hits] == pytest.approx([float(x) for x in expected], abs=1e-5)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_rerank_with_a_two_label_cross_encoder_ranks_by_class_probability(corpus, tmp_path):
    """A two-label head ranks by softmax(logits)[1], never by the raw last logit. The head is set
    so that the two disagree on every pair: row 0 of the classifier is twice row 1 (no bias),
    so p(relevant) = sigmoid(l1 - l0) = sigmoid(-l1) orders the passages exactly against l1."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from query.rerank import CrossEncoderReranker, get_reranker

    torch.manual_seed(2)
    model = BertForSequenceClassification(BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        num_labels=2))
    with torch.no_grad():
        model.classifier.weight[0] = 2 * model.classifier.weight[1]
        model.classifier.bias.zero_()
    model.save_pretrained(tmp_path / "ce2")
    tokenizer = AutoTokenizer.from_pretrained(str(resolve_model_path("all-MiniLM-L6-v2", None)))
    tokenizer.save_pretrained(tmp_path / "ce2")
    settings = corpus.model_copy(update={"rerank_model": str(tmp_path / "ce2"), "rerank_depth": 7})
    assert get_reranker(settings).scorer.kind == "cross-encoder"

    hits = search(settings, Q, mode="hybrid", k=7, rerank=True)
    assert set(ids(hits)) == ALL_CHUNKS
    logits = CrossEncoderReranker(tmp_path / "ce2", 2, "cpu").logits(Q, [h.text for h in hits])
    probability = [1 / (1 + math.exp(float(a) - float(b))) for a, b in logits.tolist()]
    assert [h.score for h in hits] == pytest.approx(probability, abs=1e-5)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    last = [float(b) for _, b in logits.tolist()]
    assert len(set(last)) == 7 and last == sorted(last)  # the raw last logit would rank them in reverse


def test_rerank_default_mpnet(corpus):
    hits = search(corpus, Q, mode="bm25", k=3, rerank=True)
    from query.rerank import get_reranker

    reranker = get_reranker(corpus)
    assert (reranker.name, reranker.scorer.kind) == ("all-mpnet-base-v2", "bi-encoder")
    assert ids(hits)[0] == "python-files#0"
    assert hits[0].score == pytest.approx(reranker.scorer.scores(Q, [hits[0].text])[0], abs=1e-5)
    assert get_embedder(corpus).name == "all-MiniLM-L6-v2"


def test_bi_encoder_passage_cache(corpus):
    from esrag.split_models import MPNET_NAME
    from query.rerank import BiEncoderReranker

    mpnet = get_embedder(corpus.model_copy(update={"embed_model": MPNET_NAME}))
    encoded: list[list[str]] = []
    real = mpnet._encode

    def spy(texts):
        encoded.append(list(texts))
        return real(texts)

    plain = BiEncoderReranker(mpnet)
    cached = BiEncoderReranker(mpnet, cache_size=2)
    texts = ["Read a file line by line with a for loop.", "Bread needs a hot oven.",
             "Read a file line by line with a for loop.", "Vacuum reclaims space."]
    expected = plain.scores(Q, texts)
    mpnet._encode = spy
    try:
        assert cached.scores(Q, texts) == pytest.approx(expected, abs=1e-5)
        # the repeated passage was encoded once; only the last two distinct passages are kept
        assert encoded == [[Q], [texts[0], texts[1], texts[3]]]
        assert len(cached.cache) == 2
        encoded.clear()
        got = cached.scores("bread", texts[1:])
        assert encoded == [["bread"], [texts[2]]]  # texts[0] (= texts[2]) had been evicted
    finally:
        del mpnet._encode
    assert got == pytest.approx(plain.scores("bread", texts[1:]), abs=1e-5)

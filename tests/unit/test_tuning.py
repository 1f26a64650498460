"""Pure parts of the workbench and tuning: fuse(), leg scores, the effective fusion of an index,
document rebuilding, judgments to qrels, and the tune grid."""

from __future__ import annotations

import pytest

from esrag.errors import ConfigError
from esrag.settings import load_settings
from query import fusion
from query.documents import document_view
from query.eval.tune import FUSIONS, WEIGHTS, parse_grid
from query.hits import Hit
from query.judgments import query_id, to_qrels
from query.tuning import effective_fusion

S = [("a", 10.0), ("b", 5.0), ("c", 1.0)]
D = [("b", 0.9), ("d", 0.8), ("a", 0.1)]


def test_fuse_is_the_named_fusion():
    assert fusion.fuse("dbsf", S, D, 0.3, window=50) == fusion.dbsf(S, D, 0.3, 50)
    assert fusion.fuse("weighted", S, D, 0.3) == fusion.weighted(S, D, 0.3)
    assert fusion.fuse("rrf", S, D, 0.5, rrf_k=60) == fusion.rrf([["a", "b", "c"], ["b", "d", "a"]], 60)
    with pytest.raises(ValueError, match="unknown fusion 'x'"):
        fusion.fuse("x", S, D, 0.5)


def test_leg_scores_are_what_the_fusion_sums():
    w = 0.3
    for method in ("dbsf", "weighted"):
        ns, nd = fusion.leg_scores(method, S, window=50), fusion.leg_scores(method, D, window=50)
        fused = dict(fusion.fuse(method, S, D, w, window=50))
        for doc in "abcd":
            assert fused[doc] == pytest.approx((1 - w) * ns.get(doc, 0.0) + w * nd.get(doc, 0.0))
    assert fusion.leg_scores("rrf", S, rrf_k=60) == {"a": 1 / 61, "b": 1 / 62, "c": 1 / 63}
    assert fusion.leg_scores("weighted", S) == {"a": 1.0, "b": pytest.approx(4 / 9), "c": 0.0}


def test_effective_fusion_tuned_unless_explicit(monkeypatch):
    monkeypatch.delenv("ESRAG_FUSION", raising=False)
    monkeypatch.delenv("ESRAG_HYBRID_WEIGHT_DENSE", raising=False)
    tuned = {"tuned": {"fusion": "rrf", "hybrid_weight_dense": 0.4, "ndcg_at_10": 0.5}}
    s = load_settings()
    assert effective_fusion(s, {}) == {"method": "dbsf", "weight_dense": 0.8, "source": "settings"}
    assert effective_fusion(s, tuned) == {"method": "rrf", "weight_dense": 0.4, "source": "tuned"}
    assert effective_fusion(load_settings(fusion="weighted"), tuned) == {
        "method": "weighted", "weight_dense": 0.4, "source": "tuned+settings"}
    monkeypatch.setenv("ESRAG_HYBRID_WEIGHT_DENSE", "0.6")
    assert effective_fusion(load_settings(), tuned) == {"method": "rrf", "weight_dense": 0.6,
                                                        "source": "tuned+settings"}
    assert effective_fusion(s, {"tuned": {"fusion": "bogus"}})["method"] == "dbsf"


def hit(cid: str, text: str, start: int) -> Hit:
    return Hit(chunk_id=cid, doc_id="d", source="s", title="t", text=text, score=0.0, start=start,
               end=start + len(text), chunk_no=0)


def test_document_view_places_chunks_at_offsets():
    view = document_view([hit("d#0", "Hello world.", 0), hit("d#1", "world. Bye now.", 6)])
    assert view["text"] == "Hello world. Bye now."
    assert view["chunks"] == [{"chunk_id": "d#0", "start": 0, "end": 12}, {"chunk_id": "d#1", "start": 6,
                                                                           "end": 21}]
    assert document_view([hit("d#0", "ab", 0), hit("d#1", "cd", 4)])["text"] == "ab  cd"


def test_to_qrels_takes_the_best_chunk_grade_per_document():
    q = "how  are valleys carved"
    rows = [{"query": " ".join(q.split()), "query_id": query_id(q), "chunk_id": c, "doc_id": d,
             "relevance": g} for c, d, g in (("x#0", "x", 0), ("x#1", "x", 2), ("y#0", "y", 0))]
    queries, qrels = to_qrels(rows)
    assert queries == {query_id(q): "how are valleys carved"}
    assert qrels == {query_id(q): {"x": 2, "y": 0}}
    assert query_id("how are valleys carved") == query_id(q)


def test_parse_grid():
    assert parse_grid(None, None) == (list(FUSIONS), list(WEIGHTS))
    assert parse_grid("rrf, dbsf", "0.3,1") == (["rrf", "dbsf"], [0.3, 1.0])
    with pytest.raises(ConfigError, match="--fusions: unknown fusion 'rff'"):
        parse_grid("rff", None)
    with pytest.raises(ConfigError, match="--weights: each weight must lie between 0 and 1"):
        parse_grid(None, "1.5")
    with pytest.raises(ConfigError, match="--weights: not a comma-separated list"):
        parse_grid(None, "a,b")

"""Pure logic of query/eval: doc collapse, metrics via ir-measures, answers, parsing, reports."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from esrag.errors import ConfigError, EsragError
from esrag.settings import load_settings
from query.eval import answers, beir, report, runner
from query.eval.metrics import collapse_to_docs, evaluate, p50, rank_scores


@dataclass
class H:
    doc_id: str
    score: float


def test_collapse_keeps_best_chunk_per_document_and_depth():
    hits = [H("a", 0.9), H("b", 0.8), H("a", 0.95), H("c", 0.1), H("b", 0.2)]
    assert collapse_to_docs(hits) == {"a": 0.95, "b": 0.8, "c": 0.1}
    assert list(collapse_to_docs(hits, depth=2)) == ["a", "b"]


def test_rank_scores_keep_order_under_ties():
    assert rank_scores({"x": 1.0, "a": 1.0, "m": 0.5}) == {"x": 3.0, "a": 2.0, "m": 1.0}


def test_evaluate_exact_values_and_missing_queries_score_zero():
    qrels = {"q1": {"d1": 1, "d2": 1}, "q2": {"x": 1}}
    run = {"q1": {"d2": 2.0, "d3": 1.0}}
    out = evaluate(qrels, run)
    # q1: nDCG@10 = (1/log2(2)) / (1 + 1/log2(3)) = 0.6131; q2 has no hits -> 0.
    assert out == {"ndcg@10": 0.3066, "recall@100": 0.25, "mrr@10": 0.5}


def test_evaluate_perfect_run():
    assert evaluate({"q": {"a": 1}}, {"q": {"a": 1.0, "b": 0.5}}) == {
        "ndcg@10": 1.0, "recall@100": 1.0, "mrr@10": 1.0,
    }


def test_p50():
    assert p50([3.0, 1.0, 2.0]) == 2.0
    assert p50([]) == 0.0


def test_token_f1():
    assert answers.token_f1("The cat sat.", "a cat sat") == 1.0
    assert answers.token_f1("cat", "dog") == 0.0
    assert answers.token_f1("cat dog", "cat") == pytest.approx(2 / 3)
    assert answers.best_f1("dog", ["cat", "dog"]) == 1.0


def test_answer_quality_counts_citations():
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1}}
    outs = {
        "one?": {"answer": "a b", "citations": [{"doc_id": "d1"}, {"doc_id": "zz"}]},
        "two?": {"answer": "nothing", "citations": []},
    }
    got = answers.answer_quality({"q1": "one?", "q2": "two?"}, {"q1": ["a b"], "q2": ["c"]}, qrels, outs.get)
    assert got == {"answers": 2, "token_f1": 0.5, "cited_share": 0.5, "citation_precision": 0.5}


def _write(tmp: Path, qrels: str = "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t0\n") -> Path:
    (tmp / "qrels").mkdir(parents=True)
    (tmp / "corpus.jsonl").write_text('{"_id": "d1", "text": "x"}\n')
    (tmp / "queries.jsonl").write_text(
        json.dumps({"_id": "q1", "text": "first", "metadata": {"answers": ["x"]}}) + "\n"
        + json.dumps({"_id": "q2", "text": "second"}) + "\n"
    )
    (tmp / "qrels" / "test.tsv").write_text(qrels)
    return tmp


def test_load_dataset_keeps_judged_queries(tmp_path):
    ds = beir.load_dataset(_write(tmp_path / "My Set"))
    assert ds.name == "my-set"
    assert ds.queries == {"q1": "first"}
    assert ds.answers == {"q1": ["x"]}


def test_load_dataset_errors_name_the_file(tmp_path):
    with pytest.raises(EsragError, match="does not exist"):
        beir.load_dataset(tmp_path / "nope")
    d = _write(tmp_path / "d", qrels="q1\td1\t1\n")
    with pytest.raises(EsragError, match=r"test\.tsv: first line must be the header"):
        beir.load_dataset(d)
    (d / "qrels" / "test.tsv").unlink()
    with pytest.raises(EsragError, match=r"qrels/test\.tsv is missing"):
        beir.load_dataset(d)


def test_parse_modes_and_sweep():
    assert runner.parse_modes("all") == ["bm25", "dense", "hybrid", "hybrid+rerank"]
    assert runner.parse_modes("bm25,hybrid") == ["bm25", "hybrid"]
    with pytest.raises(ConfigError):
        runner.parse_modes("fast")
    assert runner.parse_sweep("fusion=rrf, weighted") == ("fusion", ["rrf", "weighted"])
    with pytest.raises(ConfigError, match="cannot sweep"):
        runner.parse_sweep("es_url=x")
    with pytest.raises(ConfigError, match="KEY=V1"):
        runner.parse_sweep("fusion")


def test_with_settings_validates():
    s = load_settings()
    assert runner.with_settings(s, hybrid_weight_dense="0.3").hybrid_weight_dense == 0.3
    with pytest.raises(ConfigError) as info:
        runner.with_settings(s, hybrid_weight_dense="2")
    assert str(info.value) == ("invalid setting ESRAG_HYBRID_WEIGHT_DENSE: Input should be less than or "
                               "equal to 1")


def test_report_table_and_html():
    out = {"dataset": "x", "queries": 2, "results": {
        "bm25": {"ndcg@10": 0.5, "recall@100": 1.0, "mrr@10": 0.25, "p50_ms": 12.34},
    }}
    assert report.results_table(out["results"]).splitlines() == [
        "mode  ndcg@10  recall@100  mrr@10  p50_ms",
        "bm25   0.5000      1.0000  0.2500    12.3",
    ]
    page = report.render_html(out)
    assert page.count("<svg") == 4 and "<script" not in page

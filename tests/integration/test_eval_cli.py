"""`esrag eval-build` + `esrag eval` end to end on the small chatterbot slice, real Elasticsearch.

Also the regression guard: nDCG@10 of the default mode must not drop below the value recorded
in tests/data/eval_baseline.json minus its margin.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from esrag.cli import main
from query.eval.runner import DEFAULT_MODE

BASELINE = Path(__file__).resolve().parent.parent / "data" / "eval_baseline.json"


@pytest.mark.timeout(600)
def test_eval_small_chatterbot_slice(settings, tmp_path: Path, capsys):
    base = json.loads(BASELINE.read_text())["chatterbot-small"]
    data = tmp_path / "chatterbot-small"
    assert main(["eval-build", "chatterbot", str(data), "--small"]) == 0
    capsys.readouterr()
    report = tmp_path / "report.html"
    rc = main(["eval", str(data), "--mode", f"bm25,{DEFAULT_MODE}", "--json", "--index", settings.index,
               "--report", str(report)])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert out["dataset"] == "chatterbot-small" and out["queries"] == 40
    assert set(out["results"]) == {"bm25", DEFAULT_MODE}
    for metrics in out["results"].values():
        assert set(metrics) == {"ndcg@10", "recall@100", "mrr@10", "p50_ms"}
        assert all(0.0 <= metrics[k] <= 1.0 for k in ("ndcg@10", "recall@100", "mrr@10"))
    assert report.read_text().count("<svg") == 4
    ndcg = out["results"][DEFAULT_MODE]["ndcg@10"]
    assert ndcg >= base["ndcg@10"] - base["margin"], f"nDCG@10 {ndcg} fell below the baseline {base}"
    # A second run reuses the index (unchanged documents are skipped); --limit cuts the queries;
    # --answers scores the default (extractive) backend's answers against the reference answers:
    # 5 answers, each with a citation, a third of the cited documents judged relevant (the
    # default embedder, MiniLM on ONNX fp32, with the packed context of ESRAG_ASK_CANDIDATES).
    args = ["eval", str(data), "--mode", "bm25", "--json", "--index", settings.index, "--limit", "5",
            "--answers"]
    assert main(args) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["queries"] == 5
    got = again["answers"]
    # the report rounds to 4 decimals: equal within half a unit of that last place
    assert {k: got[k] for k in ("answers", "token_f1", "cited_share", "citation_precision")} == {
        "answers": 5, "token_f1": pytest.approx(0.3299, abs=5e-5), "cited_share": 1.0,
        "citation_precision": pytest.approx(1 / 3, abs=5e-5)}
    # the length-neutral measures, and the citation check (extraction copies passage sentences,
    # so every citation is supported)
    assert set(got) == {"answers", "token_f1", "cited_share", "citation_precision", "rouge_l",
                        "answer_similarity", "faithfulness", "declined_share", "unsupported_citations",
                        "attributed_citations", "p50_prompt_tokens", "p50_first_token_ms", "p50_total_ms",
                        "backend"}
    assert got["backend"] == "extractive" and got["faithfulness"] == 1.0
    assert got["unsupported_citations"] == 0 and got["declined_share"] == 0.0
    assert got["attributed_citations"] == 0  # every extracted sentence carries its [n] already
    assert got["answer_similarity"] == pytest.approx(0.4780, abs=0.002) and 0 < got["rouge_l"] < 1
    assert got["p50_prompt_tokens"] is None  # no LLM prompt


def test_eval_missing_qrels_is_one_line(tmp_path: Path, capsys):
    (tmp_path / "corpus.jsonl").write_text('{"_id": "d", "text": "x"}\n')
    (tmp_path / "queries.jsonl").write_text('{"_id": "q", "text": "x"}\n')
    assert main(["eval", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"error: not a BEIR dataset: {tmp_path}/qrels/test.tsv is missing"

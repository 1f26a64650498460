"""Judgments to tuning, end to end on the chatterbot eval slice: judgments marked through the
workbench API land in ES, export as a BEIR folder, `esrag tune --apply` stores the sweep's best
fusion and weight in the index _meta, and hybrid retrieval on that index then uses them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from dashboard_server import serve

from esrag.index import alias_target, index_meta
from esrag.settings import load_settings
from query.eval import beir, runner
from query.eval.cli import build_dataset
from query.retrieval import document_chunks, retrieve
from server.app import create_app

ESRAG = str(Path(sys.executable).parent / "esrag")


def esrag(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("ESRAG_FUSION", "ESRAG_HYBRID_WEIGHT_DENSE")}
    return subprocess.run([ESRAG, *args], env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.timeout(900)
def test_judgments_export_tune_apply_and_use(es, settings, tmp_path: Path):
    build_dataset("chatterbot", tmp_path / "set", small=True)
    dataset = beir.load_dataset(tmp_path / "set")
    runner.ingest_corpus(settings, dataset, client=es)
    by_text = {dataset.queries[q]: q for q in dataset.qrels}

    # judgments as the workbench stores them: each qrel's document relevant, and for each
    # query the top BM25 hit that is not in its qrels marked not relevant
    nonrel = 0
    judged_docs = {d for docs in dataset.qrels.values() for d in docs}
    with serve(create_app(settings)) as base:
        for qid, docs in dataset.qrels.items():
            for doc_id, grade in docs.items():
                chunk = document_chunks(settings, doc_id, client=es)[0]
                r = httpx.post(f"{base}/dashboard/api/judgments", timeout=60, headers={"X-Dashboard": "1"},
                               json={"query": dataset.queries[qid], "chunk_id": chunk.chunk_id,
                                     "doc_id": doc_id, "relevance": grade})
                assert r.status_code == 200, r.text
            top = retrieve(settings, dataset.queries[qid], mode="bm25", k=1, client=es).hits
            if top and top[0].doc_id not in docs:
                r = httpx.post(f"{base}/dashboard/api/judgments", timeout=60, headers={"X-Dashboard": "1"},
                               json={"query": dataset.queries[qid], "chunk_id": top[0].chunk_id,
                                     "doc_id": top[0].doc_id, "relevance": 0})
                assert r.status_code == 200, r.text
                nonrel += 1
                judged_docs.add(top[0].doc_id)
        listed = httpx.get(f"{base}/dashboard/api/judgments", timeout=60).json()["judgments"]
        assert len(listed) == 44 + nonrel
        before = httpx.get(f"{base}/dashboard/api/search/tuning", timeout=60).json()
        assert (before["method"], before["weight_dense"], before["source"], before["tuned"]) == (
            "dbsf", 0.8, "settings", None)

        # export: a BEIR folder with the same graded qrels (by query text) and the judged documents
        r = esrag("judgments", "export", settings.index, str(tmp_path / "export"))
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith(f"{len(judged_docs)} documents, 40 queries, {44 + nonrel} qrels "
                                   f"({44 + nonrel} judgments) in ")
        exported = beir.load_dataset(tmp_path / "export")
        got = {exported.queries[q]: {d: g for d, g in docs.items() if g > 0}
               for q, docs in exported.qrels.items()}
        assert got == {" ".join(dataset.queries[q].split()): docs for q, docs in dataset.qrels.items()}
        corpus = {json.loads(x)["_id"]: json.loads(x)["text"]
                  for x in (tmp_path / "set" / "corpus.jsonl").read_text().splitlines()}
        for line in (tmp_path / "export" / "corpus.jsonl").read_text().splitlines():
            doc = json.loads(line)
            assert doc["text"] == corpus[doc["_id"]]

        # tune: the default grid; the stored pair is the sweep's best
        r = esrag("tune", settings.index, "--apply", "--json")
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)
        assert (out["queries"], out["judgments"], out["applied"]) == (40, 44 + nonrel, True)
        assert [(x["fusion"], x["weight_dense"]) for x in out["results"]] == [
            (f, w) for f in ("dbsf", "rrf", "weighted") for w in (0.2, 0.4, 0.5, 0.6, 0.8, 0.9)]
        top = max(x["ndcg@10"] for x in out["results"])
        first_best = next(x for x in out["results"]
                          if x["ndcg@10"] == top and x["mrr@10"] == max(
                              y["mrr@10"] for y in out["results"] if y["ndcg@10"] == top))
        best = out["best"]
        assert (best["fusion"], best["hybrid_weight_dense"], best["ndcg_at_10"]) == (
            first_best["fusion"], first_best["weight_dense"], top)
        stored = index_meta(es, alias_target(es, settings.index))["tuned"]
        assert stored == best

        # the same score as `esrag eval`'s scoring of that pair on the exported judgments
        pinned = runner.with_settings(settings, fusion=best["fusion"],
                                      hybrid_weight_dense=best["hybrid_weight_dense"])
        again = runner.score_modes(pinned, beir.load_dataset(tmp_path / "export"), ["hybrid"], client=es)
        assert again["hybrid"]["ndcg@10"] == pytest.approx(top, abs=1e-9)

        # queries now use it: the workbench reports it, and default retrieval ranks as the pinned pair does
        now = httpx.get(f"{base}/dashboard/api/search/tuning", timeout=60).json()
        assert (now["method"], now["weight_dense"], now["source"], now["tuned"]) == (
            best["fusion"], best["hybrid_weight_dense"], "tuned", best)
        plain = load_settings(index=settings.index)
        for text in list(by_text)[:10]:
            assert [h.chunk_id for h in retrieve(plain, text, k=10, client=es).hits] == \
                   [h.chunk_id for h in retrieve(pinned, text, k=10, client=es).hits]
        # an explicit setting still wins over the tuned value
        forced = load_settings(index=settings.index, fusion="rrf", hybrid_weight_dense=0.5)
        r = httpx.post(f"{base}/dashboard/api/search/compare", timeout=120, headers={"X-Dashboard": "1"},
                       json={"query": list(by_text)[0], "rerank": False})
        assert r.json()["fusion"]["source"] == "tuned"
        from query.tuning import effective_fusion

        assert effective_fusion(forced, {"tuned": best}) == {"method": "rrf", "weight_dense": 0.5,
                                                             "source": "settings"}


def test_tune_without_judgments_is_one_line(settings, es):
    r = esrag("tune", "test-no-judgments-here")
    assert (r.returncode, r.stderr) == (1, "error: index 'test-no-judgments-here' does not exist; "
                                           "ingest documents first\n")
    r = esrag("tune", "x", "--fusions", "bogus")
    assert (r.returncode, r.stderr) == (2, "error: --fusions: unknown fusion 'bogus'; "
                                           "use dbsf, rrf, weighted\n")
    r = esrag("judgments", "export", settings.index, "/tmp/never-written")
    assert r.returncode == 1

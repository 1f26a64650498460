"""`esrag reindex --model`: a live alias moves to a re-embedded index with no failed or mixed query."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch
from elasticsearch.helpers import scan

from esrag.cli import main
from esrag.errors import ModelMismatch
from esrag.index import alias_target, index_meta
from esrag.settings import Settings
from ingest.cli import run_ingest
from ingest.reindex import embed_input
from query.retrieval import search

PAGES = Path("/usr/share/doc/python3.11/html/library")
FILES = ["bisect.html", "keyword.html", "colorsys.html"]  # real text, about 30 chunks
NEW_MODEL = "all-mpnet-base-v2"


def _chunks(es: Elasticsearch, index: str) -> dict[str, dict]:
    return {h["_id"]: h["_source"] for h in scan(es, index=index, query={"query": {"match_all": {}}})}


class Prober(threading.Thread):
    """Sends BM25 queries to the alias in a loop; records each request's send time and its
    response's concrete indices."""

    def __init__(self, es: Elasticsearch, alias: str):
        super().__init__(daemon=True)
        self.es = es.options(request_timeout=30)
        self.alias = alias
        self.stop = threading.Event()
        self.responses: list[tuple[float, frozenset[str], int]] = []
        self.errors: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set():
            sent = time.monotonic()
            try:
                r = self.es.search(index=self.alias, query={"match": {"text": "python"}}, size=100)
                hits = r["hits"]["hits"]
                self.responses.append((sent, frozenset(h["_index"] for h in hits), len(hits)))
            except Exception as exc:  # noqa: BLE001 - any failure is what the test counts
                self.errors.append(repr(exc))
            time.sleep(0.02)


@pytest.mark.timeout(600)
def test_reindex_swaps_live_alias_to_new_model(
    es: Elasticsearch, settings: Settings, tmp_path: Path, capsys
) -> None:
    for name in FILES:
        shutil.copy(PAGES / name, tmp_path / name)
    summary = run_ingest([str(tmp_path)], settings)
    assert summary.failed == []
    old = alias_target(es, settings.index)
    assert old is not None
    before = _chunks(es, old)
    assert 20 <= len(before) <= 60

    prober = Prober(es, settings.index)
    prober.start()
    try:
        while len(prober.responses) < 5 and not prober.errors:
            time.sleep(0.05)
        rc = main(["reindex", "--model", NEW_MODEL, "--index", settings.index, "--json"])
        swapped_at = time.monotonic()
        n_done = len(prober.responses)
        while len(prober.responses) < n_done + 5 and not prober.errors:
            time.sleep(0.05)
    finally:
        prober.stop.set()
        prober.join(30)
    assert not prober.is_alive()
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    new = alias_target(es, settings.index)
    assert out["old_index"] == old and out["new_index"] == new and new != old
    assert new == f"{settings.index}-all-mpnet-base-v2-v1"
    assert (out["chunks"], out["old_model"], out["new_model"], out["new_dims"], out["old_deleted"]) == (
        len(before), "all-MiniLM-L6-v2", NEW_MODEL, 768, False)
    assert out["embed_model_env"] == {"ESRAG_EMBED_MODEL": NEW_MODEL}

    # no request failed, and no response mixed the two indices
    assert prober.errors == []
    assert all(len(indices) == 1 for _, indices, _ in prober.responses)
    served = [next(iter(indices)) for _, indices, _ in prober.responses]
    assert all(n == prober.responses[0][2] for _, _, n in prober.responses)  # same hit count throughout
    first_new = served.index(new)
    assert set(served[:first_new]) == {old} and set(served[first_new:]) == {new}
    assert first_new >= 5
    # a request answered by the old index was sent before reindex returned (one in flight at the
    # swap may be answered after it)
    assert all(t < swapped_at for t, _, _ in prober.responses[:first_new])
    assert set(served[n_done + 1:]) == {new}  # sent after reindex returned

    # the new index: the new model's _meta, the same chunk ids and fields, new 768-d vectors
    meta = index_meta(es, new)
    assert (meta["model"], meta["dims"]) == (NEW_MODEL, 768)
    after = _chunks(es, new)
    assert sorted(after) == sorted(before)
    assert es.count(index=new)["count"] == len(before)
    for cid, src in after.items():
        old_src = before[cid]
        assert {k: v for k, v in src.items() if k not in ("embedding", "model")} == {
            k: v for k, v in old_src.items() if k not in ("embedding", "model")}
        assert src["model"] == NEW_MODEL and len(src["embedding"]) == 768
    assert es.indices.exists(index=old)  # kept for rollback

    # the re-embedded vector is the new model's vector of the same input the pipeline embeds
    from esrag.embedder import get_embedder

    mpnet = get_embedder(settings.model_copy(update={"embed_model": NEW_MODEL}))
    some = sorted(after)[:3]
    vecs = mpnet.encode_document([embed_input(after[c]) for c in some])
    for cid, vec in zip(some, vecs, strict=True):
        assert max(abs(a - b) for a, b in zip(after[cid]["embedding"], vec.tolist(), strict=True)) < 1e-4

    # queries configured for the old model now fail with the model mismatch error; queries that
    # name no model follow the index
    old_settings = settings.model_copy(update={"embed_model": "all-MiniLM-L6-v2"})
    with pytest.raises(ModelMismatch, match=f"index {new} was built with model {NEW_MODEL} \\(768d, fp32\\)"):
        search(old_settings, "bisect a sorted list", mode="dense")
    assert search(settings, "bisect a sorted list", mode="dense")[0].source.endswith("bisect.html")
    mpnet_settings = settings.model_copy(update={"embed_model": NEW_MODEL})
    hits = search(mpnet_settings, "bisect a sorted list", mode="dense")
    assert hits and hits[0].source.endswith("bisect.html")


@pytest.mark.timeout(300)
def test_reindex_refusals_are_one_line(es: Elasticsearch, settings: Settings, tmp_path: Path, capsys) -> None:
    assert main(["reindex", "--model", NEW_MODEL, "--index", settings.index]) == 1
    err = capsys.readouterr().err
    assert err == f"error: index alias '{settings.index}' does not exist; nothing to reindex\n"

    (tmp_path / "a.txt").write_text("Hello there.")
    run_ingest([str(tmp_path / "a.txt")], settings)
    old = alias_target(es, settings.index)
    rc = main(["reindex", "--model", "all-MiniLM-L6-v2", "--index", settings.index])
    captured = capsys.readouterr()
    assert (rc, captured.out) == (1, "")
    assert captured.err == (
        f"error: index {old} already uses model all-MiniLM-L6-v2 (384d, fp32); nothing to reindex\n")

    rc = main(["reindex", "--model", "no-such-model", "--index", settings.index])
    assert rc == 2
    assert capsys.readouterr().err.startswith("error: model 'no-such-model' is not one of all-MiniLM-L6-v2, ")
    assert alias_target(es, settings.index) == old
    assert sorted(es.indices.get(index=f"{settings.index}*")) == [old]  # nothing left behind


@pytest.mark.timeout(300)
def test_reindex_delete_old_human_output(
    es: Elasticsearch, settings: Settings, tmp_path: Path, capsys
) -> None:
    (tmp_path / "a.md").write_text("# Title\n\nOne short paragraph about sorted lists.\n")
    run_ingest([str(tmp_path / "a.md")], settings)
    old = alias_target(es, settings.index)
    rc = main(["reindex", "--model", NEW_MODEL, "--index", settings.index, "--delete-old"])
    lines = capsys.readouterr().out.splitlines()
    new = f"{settings.index}-all-mpnet-base-v2-v1"
    assert rc == 0
    assert lines[0].startswith(f"reindexed 1 chunks of {settings.index} from {old} (all-MiniLM-L6-v2, 384d) "
                               f"into {new} (all-mpnet-base-v2, 768d) in ")
    assert lines[1:] == [
        f"alias {settings.index} now points at {new}",
        f"old index {old} deleted",
        f"set ESRAG_EMBED_MODEL={NEW_MODEL} for workers and wherever ESRAG_EMBED_MODEL is set: with "
        "all-MiniLM-L6-v2 they now fail with a model mismatch (queries that set no model follow the index)",
    ]
    assert not es.indices.exists(index=old)
    assert alias_target(es, settings.index) == new

"""Migration between embedding models on the real Elasticsearch: an index built with MiniLM (on
torch, as before ONNX) keeps answering until `esrag reindex --model` rebuilds it; a configuration
that differs from the index is refused with the one-line message that names the command."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

from esrag.cli import main
from esrag.embedder import get_embedder, settings_for_index
from esrag.errors import ModelMismatch
from esrag.index import alias_target, index_meta
from esrag.models import BGE_QUERY_PROMPT
from esrag.settings import Settings
from ingest.cli import run_ingest
from query.retrieval import INDEX_CACHE_SECONDS, search

PAGES = Path("/usr/share/doc/python3.11/html/library")
FILES = ["bisect.html", "colorsys.html"]
NEW = "bge-small-en-v1.5"
Q = "convert between RGB and HSV colors"


def ids(hits):
    return [h.chunk_id for h in hits]


def ingest_pages(es: Elasticsearch, built_with: Settings, folder: Path, monkeypatch) -> str:
    """Ingest FILES with ``built_with`` (no model or precision from the environment); the index."""
    monkeypatch.delenv("ESRAG_EMBED_MODEL", raising=False)
    monkeypatch.delenv("ESRAG_EMBED_PRECISION", raising=False)
    for name in FILES:
        shutil.copy(PAGES / name, folder / name)
    summary = run_ingest([str(folder)], built_with)
    assert summary.failed == [] and summary.indexed == summary.chunks > 0
    return alias_target(es, built_with.index)


@pytest.mark.timeout(900)
def test_minilm_index_keeps_answering_until_reindexed(
    es: Elasticsearch, settings: Settings, tmp_path: Path, capsys, monkeypatch
) -> None:
    minilm = settings.model_copy(update={"embed_model": "all-MiniLM-L6-v2", "embed_runtime": "torch"})
    old = ingest_pages(es, minilm, tmp_path, monkeypatch)
    meta = index_meta(es, old)
    assert {k: meta[k] for k in ("model", "dims", "pooling", "query_prompt", "document_prompt",
                                 "precision", "runtime")} == {
        "model": "all-MiniLM-L6-v2", "dims": 384, "pooling": "mean", "query_prompt": "",
        "document_prompt": "", "precision": "fp32", "runtime": "torch"}

    # settings that name no model follow the index: the MiniLM index keeps answering (ONNX fp32)
    expected = ids(search(minilm, Q, mode="dense", k=5))
    assert expected[0].startswith(summary_doc_prefix(es, old, "colorsys.html"))
    assert ids(search(settings, Q, mode="dense", k=5)) == expected

    # a different configured model is refused, naming the command that migrates
    bge = settings.model_copy(update={"embed_model": NEW})
    with pytest.raises(ModelMismatch) as err:
        search(bge, Q, mode="hybrid")
    message = str(err.value)
    assert message.startswith(f"index {old} was built with model all-MiniLM-L6-v2 (384d, fp32) but the "
                              f"configured embedder is {NEW} (384d, fp32) [")
    assert f"run `esrag reindex --model {NEW}` to rebuild the index for it" in message
    with pytest.raises(ModelMismatch, match=f"run `esrag reindex --model {NEW}`"):
        run_ingest([str(tmp_path)], bge)  # writers are refused too: nothing mixed into the index

    # the CLI prints it as one line with the mismatch exit code
    monkeypatch.setenv("ESRAG_EMBED_MODEL", NEW)
    monkeypatch.setenv("ESRAG_INDEX", settings.index)
    assert main(["search", Q, "--mode", "dense"]) == 4
    err_text = capsys.readouterr().err
    assert err_text == f"error: {message}\n"
    monkeypatch.delenv("ESRAG_EMBED_MODEL")

    # the migration: re-embedded with the new model at its default precision, alias swapped
    assert main(["reindex", "--model", NEW, "--index", settings.index, "--json"]) == 0
    capsys.readouterr()
    new = alias_target(es, settings.index)
    assert new == f"{settings.index}-bge-small-en-v1-5-v1" and new != old
    meta = index_meta(es, new)
    assert {k: meta[k] for k in ("model", "pooling", "query_prompt", "document_prompt", "precision",
                                 "runtime")} == {
        "model": NEW, "pooling": "cls", "query_prompt": BGE_QUERY_PROMPT, "document_prompt": "",
        "precision": "fp32", "runtime": "onnx"}
    # now the default follows the new index (its embedder is bge's), and the old model is the one
    # refused; the freshly built index may still be merging segments, so its approximate kNN is
    # compared on the head of the list only
    assert get_embedder(settings_for_index(settings, meta)).info == get_embedder(bge).info
    assert ids(search(settings, Q, mode="dense", k=5))[:3] == ids(search(bge, Q, mode="dense", k=5))[:3]
    with pytest.raises(ModelMismatch, match="run `esrag reindex --model all-MiniLM-L6-v2`"):
        search(minilm, Q, mode="dense")


def summary_doc_prefix(es: Elasticsearch, index: str, filename: str) -> str:
    """The doc id prefix of the chunks of ``filename`` (chunk ids start with the doc id)."""
    r = es.search(index=index, query={"wildcard": {"source": f"*{filename}"}}, size=1)
    return r["hits"]["hits"][0]["_source"]["doc_id"]


@pytest.mark.timeout(600)
def test_int8_index_keeps_answering_and_reindex_moves_it_to_the_fp32_default(
    es: Elasticsearch, settings: Settings, tmp_path: Path, capsys, monkeypatch
) -> None:
    """An index written by the earlier default (MiniLM, ONNX int8) answers with the defaults at its
    own precision; `esrag reindex --model all-MiniLM-L6-v2` re-embeds it at the fp32 default."""
    int8 = settings.model_copy(update={"embed_runtime": "onnx", "embed_precision": "int8"})
    old = ingest_pages(es, int8, tmp_path, monkeypatch)
    assert (index_meta(es, old)["precision"], get_embedder(settings).info.precision) == ("int8", "fp32")

    expected = ids(search(int8, Q, mode="dense", k=5))
    assert ids(search(settings, Q, mode="dense", k=5)) == expected  # the defaults follow the index

    monkeypatch.setenv("ESRAG_INDEX", settings.index)
    assert main(["reindex", "--model", "all-MiniLM-L6-v2", "--json"]) == 0
    capsys.readouterr()
    new = alias_target(es, settings.index)
    assert new != old
    meta = index_meta(es, new)
    assert (meta["model"], meta["precision"], meta["runtime"]) == ("all-MiniLM-L6-v2", "fp32", "onnx")
    time.sleep(INDEX_CACHE_SECONDS + 0.5)  # until then this process may still answer from the old index
    with pytest.raises(ModelMismatch, match="precision 'fp32' vs 'int8'"):
        search(int8, Q, mode="dense")  # the int8 configuration is now the one refused
    assert ids(search(settings, Q, mode="dense", k=5))[0] == expected[0]

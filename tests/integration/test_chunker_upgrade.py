"""A changed chunker re-chunks every document on the next ingest and leaves no old chunk behind.

The chunker version and ESRAG_CHUNK_MIN_TOKENS are part of each document's hash, so a
document chunked by an older chunker no longer matches its completion marker: the next
ingest redoes it, and its stale set (every stored chunk the new chunking does not have)
is deleted. Real Elasticsearch, real embedder, real DocBook-style page.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

import ingest.documents
from esrag.embedder import get_embedder
from esrag.settings import Settings
from ingest.chunking import HFTokenCounter, chunk_document
from ingest.documents import chunk_hash, chunk_id
from ingest.loaders import load_file
from ingest.pipeline import ingest_files

PAGE = Path(__file__).resolve().parents[1] / "data" / "docbook" / "ch09.en.html"


def _stored(es: Elasticsearch, settings: Settings) -> list[tuple[str, str]]:
    es.indices.refresh(index=settings.index)
    res = es.search(index=settings.index, size=100, query={"match_all": {}}, sort=[{"chunk_no": "asc"}],
                    source=["text"])
    return [(h["_id"], h["_source"]["text"]) for h in res["hits"]["hits"]]


def _expected(settings: Settings, path: Path) -> list[tuple[str, str]]:
    embedder = get_embedder(settings)
    doc = next(iter(load_file(path, settings.max_file_bytes)))
    counter = HFTokenCounter(embedder.counting_tokenizer)
    chunks = chunk_document(doc, counter, max_tokens=settings.chunk_max_tokens,
                            overlap=settings.chunk_overlap_tokens, min_tokens=settings.chunk_min_tokens,
                            model_max_tokens=embedder.max_seq_length)
    return [(chunk_id(doc.doc_id, c.chunk_no, chunk_hash(c.text, c.context)), c.text) for c in chunks]


@pytest.mark.timeout(300)
def test_old_chunks_are_replaced_when_the_chunker_changes(
    es: Elasticsearch, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    page = tmp_path / "ch09.en.html"
    shutil.copy(PAGE, page)
    # the index as version 1 of the chunker left it: no minimum chunk size
    legacy = settings.model_copy(update={"chunk_min_tokens": 0})
    with monkeypatch.context() as m:
        m.setattr(ingest.documents, "CHUNKER_VERSION", 1)
        first = ingest_files([page], legacy)
    old = _expected(legacy, page)
    assert (first.documents, first.chunks, first.indexed) == (1, 4, 4)
    assert [t for _, t in _stored(es, settings)] == [t for _, t in old]
    assert old[2][1] == "See Section 9.2."  # a near-empty chunk of its own

    second = ingest_files([page], settings)  # today's chunker, defaults
    new = _expected(settings, page)
    assert [t.split("\n\n")[0] for _, t in new] == [
        "Table of Contents",
        "Security updates are published for the stable release as soon as a fix is ready, "
        "and the package manager installs them like any other upgrade.",
        "9.1.2. Point releases"]
    assert (second.skipped_unchanged, second.chunks, second.indexed) == (0, 3, 3)
    # every old chunk whose id the new chunking does not reuse is deleted
    assert second.deleted == len({i for i, _ in old} - {i for i, _ in new}) == 2
    assert _stored(es, settings) == new
    assert all("See Section 9.2." != t for _, t in new)

    third = ingest_files([page], settings)
    assert (third.skipped_unchanged, third.indexed, third.deleted) == (1, 0, 0)

    # the minimum alone is part of the document's hash too
    fourth = ingest_files([page], settings.model_copy(update={"chunk_min_tokens": 0}))
    assert (fourth.skipped_unchanged, fourth.indexed, fourth.deleted) == (0, 4, 1)
    assert _stored(es, settings) == old

    # and so is the chunker version alone: a bump redoes every document
    assert ingest_files([page], settings).indexed == 3
    with monkeypatch.context() as m:
        m.setattr(ingest.documents, "CHUNKER_VERSION", ingest.documents.CHUNKER_VERSION + 1)
        bumped = ingest_files([page], settings)
    assert (bumped.skipped_unchanged, bumped.indexed, bumped.deleted) == (0, 3, 0)

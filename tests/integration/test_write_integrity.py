"""A document's write against the real node: crashes, emptied files, .jsonl id scope, shard failures."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch
from elasticsearch.helpers import scan

from esrag.cli import main
from esrag.embedder import get_embedder
from esrag.errors import EsragError
from esrag.es import ShardFailure
from esrag.index import alias_target, build_mapping
from esrag.settings import Settings
from ingest import existing
from ingest.chunking import HFTokenCounter, chunk_document
from ingest.documents import Document, chunk_hash, chunk_id, chunk_prefix
from ingest.loaders import load_file
from ingest.pipeline import ingest_files
from ingest.sources import expand_paths
from query.retrieval import document_chunks, search

ROOT = Path(__file__).resolve().parents[2]


def _ids(es: Elasticsearch, alias: str) -> dict[str, dict]:
    es.indices.refresh(index=alias)
    return {h["_id"]: h["_source"] for h in scan(es, index=alias, query={"query": {"match_all": {}}})}


def _refresh_interval(es: Elasticsearch, index: str) -> str | None:
    got = es.indices.get_settings(index=index, name="index.refresh_interval")
    return got.get(index, {}).get("settings", {}).get("index", {}).get("refresh_interval")


def _expected_ids(files: list[Path], settings: Settings) -> set[str]:
    embedder = get_embedder(settings)
    counter = HFTokenCounter(embedder.counting_tokenizer)
    out: set[str] = set()
    for path in files:
        for doc in load_file(path, settings.max_file_bytes):
            assert isinstance(doc, Document)
            for c in chunk_document(doc, counter, max_tokens=settings.chunk_max_tokens,
                                    overlap=settings.chunk_overlap_tokens,
                                    min_tokens=settings.chunk_min_tokens,
                                    model_max_tokens=embedder.max_seq_length):
                out.add(chunk_id(chunk_prefix(doc, settings.id_scope), c.chunk_no,
                                 chunk_hash(c.text, c.context)))
    return out


def _unmarked(es: Elasticsearch, alias: str) -> set[str]:
    """Documents that have chunks in the index but no completion marker (chunk 0)."""
    es.indices.refresh(index=alias)
    resp = es.search(index=alias, size=0, aggs={
        "all": {"terms": {"field": "doc_id", "size": 1000}},
        "marked": {"filter": {"term": {"chunk_no": 0}},
                   "aggs": {"ids": {"terms": {"field": "doc_id", "size": 1000}}}}})
    every = {b["key"] for b in resp["aggregations"]["all"]["buckets"]}
    return every - {b["key"] for b in resp["aggregations"]["marked"]["ids"]["buckets"]}


def _write_version(root: Path, version: str, files: int, paragraphs: int) -> None:
    for i in range(files):  # documents of different lengths, so request boundaries fall inside them
        text = "\n\n".join(f"Version {version} of file {i}, paragraph {j}: kettles boil water for tea."
                           for j in range(paragraphs + i))
        (root / f"f{i:02d}.txt").write_text(text + "\n")


@pytest.mark.timeout(600)
def test_killed_ingest_then_edit_then_ingest_gives_the_exact_chunk_set(
    es: Elasticsearch, settings: Settings, tmp_path: Path
) -> None:
    root = tmp_path / "docs"
    root.mkdir()
    _write_version(root, "A", files=20, paragraphs=30)
    env = {**os.environ, "ESRAG_INDEX": settings.index, "ESRAG_CHUNK_MAX_TOKENS": "16",
           "ESRAG_CHUNK_OVERLAP_TOKENS": "0", "ESRAG_BULK_MAX_BYTES": "65536",
           "ESRAG_REFRESH_OFF_AFTER_CHUNKS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", "from esrag.cli import main; raise SystemExit(main())",
         "ingest", "--local", "--json", str(root)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 400
        while proc.poll() is None and time.monotonic() < deadline:
            # wait until some document is half written: chunks in the index, no marker yet
            if es.indices.exists_alias(name=settings.index) and _unmarked(es, settings.index):
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)  # between two bulk requests of the load
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, "the ingest finished before it could be killed"
    left = _ids(es, settings.index)
    index = alias_target(es, settings.index)
    assert 0 < len(left) < sum(30 + i for i in range(20))
    assert _refresh_interval(es, index) == "-1"  # the killed load paused refresh and could not restore it
    assert _unmarked(es, settings.index)  # the crash left a document without its marker

    _write_version(root, "B", files=20, paragraphs=20)  # every chunk's text changes; fewer chunks
    local = settings.model_copy(update={"chunk_max_tokens": 16, "chunk_overlap_tokens": 0,
                                        "bulk_max_bytes": 65536})
    files = expand_paths([str(root)], local)
    summary = ingest_files(files, local)
    assert summary.failed == []
    after = _ids(es, settings.index)
    assert set(after) == _expected_ids(files, local)
    assert len(after) == summary.chunks == summary.indexed
    assert summary.deleted == len(left)
    assert all("Version B" in s["text"] for s in after.values())
    assert _refresh_interval(es, index) is None  # the left-over pause was adopted and restored


def test_document_that_becomes_empty_or_unreadable_loses_its_chunks(
    es: Elasticsearch, settings: Settings, tmp_path: Path
) -> None:
    (tmp_path / "a.txt").write_text("Kettles boil water.\n\nA watched pot never boils.\n")
    (tmp_path / "b.md").write_text("# Tea\n\nTea is an aromatic beverage.\n")
    (tmp_path / "c.txt").write_text("Oolong is partly oxidised.\n")
    files = expand_paths([str(tmp_path)], settings)
    first = ingest_files(files, settings)
    assert (first.documents, first.failed) == (3, [])
    before = _ids(es, settings.index)
    per_source = {src: sum(1 for s in before.values() if s["source"] == src)
                  for src in {s["source"] for s in before.values()}}

    (tmp_path / "a.txt").write_text("   \n\n  \n")
    (tmp_path / "b.md").write_bytes(b"\x00\x01\x02binary\x00" * 100)
    summary = ingest_files(files, settings)
    a, b = str((tmp_path / "a.txt").resolve()), str((tmp_path / "b.md").resolve())
    assert sorted(summary.failed, key=lambda f: f["source"]) == [
        {"source": str(tmp_path / "a.txt"),
         "error": f"empty document (no text); its {per_source[a]} previously indexed chunks were removed"},
        {"source": str(tmp_path / "b.md"),
         "error": f"binary data, not text; its {per_source[b]} previously indexed chunks were removed"},
    ]
    assert summary.deleted == per_source[a] + per_source[b]
    after = _ids(es, settings.index)
    assert {s["source"] for s in after.values()} == {str((tmp_path / "c.txt").resolve())}
    assert search(settings, "kettles boil water", mode="bm25", k=10, client=es) == []


def test_jsonl_ids_are_scoped_to_their_file(es: Elasticsearch, settings: Settings, tmp_path: Path) -> None:
    x, y = tmp_path / "x.jsonl", tmp_path / "y.jsonl"
    x.write_text(json.dumps({"id": "1", "text": "Green tea from the x file."}) + "\n"
                 + json.dumps({"id": "2", "text": "Second record of x."}) + "\n"
                 + json.dumps({"id": "1", "text": "A duplicate of id 1 in x."}) + "\n")
    y.write_text(json.dumps({"id": "1", "text": "Black tea from the y file."}) + "\n")
    files = [x, y]
    first = ingest_files(files, settings)
    duplicate = "duplicate id '1' (first on line 1); this line is skipped"
    assert first.failed == [{"source": f"{x}:3", "error": duplicate}]
    assert (first.documents, first.indexed) == (3, 3)
    chunks = _ids(es, settings.index)
    assert sorted((s["doc_id"], Path(s["source"]).name, s["text"]) for s in chunks.values()) == [
        ("1", "x.jsonl", "Green tea from the x file."),
        ("1", "y.jsonl", "Black tea from the y file."),
        ("2", "x.jsonl", "Second record of x."),
    ]
    again = ingest_files(files, settings)  # nothing flips: same chunks, nothing re-embedded
    assert (again.skipped_unchanged, again.indexed, again.deleted, again.embedded) == (3, 0, 0, 0)
    assert _ids(es, settings.index).keys() == chunks.keys()

    # with --id-scope global an id names one document across files: the last file read wins
    rc = main(["ingest", "--local", "--json", "--id-scope", "global", "--index", settings.index, str(y)])
    assert rc == 0
    glob = _ids(es, settings.index)
    assert sorted((s["doc_id"], Path(s["source"]).name) for s in glob.values()) == [
        ("1", "y.jsonl"), ("2", "x.jsonl")]


def _red_index(es: Elasticsearch, settings: Settings) -> str:
    """An esrag chunk index with two shards of which one cannot be allocated on a single node."""
    embedder = get_embedder(settings)
    body = build_mapping(settings.model_copy(update={"shards": 2}), embedder.info)
    body["settings"]["index.routing.allocation.total_shards_per_node"] = 1
    name = f"{settings.index}-red"
    es.indices.create(index=name, aliases={settings.index: {"is_write_index": True}},
                      wait_for_active_shards="0", **body)
    es.cluster.health(index=name, wait_for_status="red", timeout="30s")
    time.sleep(1)
    return name


def test_shard_failures_raise_instead_of_partial_answers(es: Elasticsearch, settings: Settings) -> None:
    name = _red_index(es, settings)
    with pytest.raises(ShardFailure) as info:
        existing.doc_hashes(es, name, [("d1", None)])
    assert str(info.value).startswith(
        "the look-up of stored document hashes failed on 1 of 2 shards: no_shard_available_action_exception")
    with pytest.raises(ShardFailure):
        existing.chunk_ids(es, name, [("d1", None)])
    with pytest.raises(EsragError) as info:
        search(settings, "tea", mode="bm25", k=5, client=es)
    assert "failed on 1 of 2 shards" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(EsragError):
        document_chunks(settings, "d1", client=es)


@pytest.mark.timeout(600)
def test_reindex_refuses_the_swap_when_a_document_changed_during_the_copy(
    es: Elasticsearch, settings: Settings, tmp_path: Path
) -> None:
    from ingest.reindex import reindex

    for i in range(6):
        (tmp_path / f"d{i}.txt").write_text(f"Document {i} talks about kettles and tea, part {i}.\n")
    ingest_files(expand_paths([str(tmp_path)], settings), settings)
    old = alias_target(es, settings.index)
    victim = sorted(_ids(es, settings.index).items())[-1]
    edits: list[int] = []

    def edit_once(done: int, total: int) -> None:
        if not edits:  # a concurrent writer rewrites one chunk: the chunk count stays the same
            src = dict(victim[1], text="Rewritten while the copy ran.")
            es.index(index=old, id=victim[0], document=src, refresh=True)
            edits.append(done)

    with pytest.raises(EsragError) as info:
        reindex(settings, "all-mpnet-base-v2", batch_size=2, progress=edit_once)
    assert str(info.value) == (
        f"alias {settings.index!r} received writes during the reindex (1 documents changed, first "
        f"{victim[1]['doc_id']!r}); nothing swapped, stop ingest and run again")
    assert edits == [2]
    assert alias_target(es, settings.index) == old
    assert sorted(es.indices.get(index=f"{settings.index}*")) == [old]  # the new index was removed

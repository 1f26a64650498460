"""Ingest against the real Elasticsearch and the real embedder: loaders, ids, re-ingest, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch
from ingest_samples import HTML_PAGE, write_docx, write_pdf

from esrag.cli import main
from esrag.embedder import ModelInfo, get_embedder
from esrag.index import alias_target, create_index
from esrag.settings import Settings
from esrag.stemming import stem_text
from ingest.chunking import HFTokenCounter, chunk_document
from ingest.documents import chunk_hash, chunk_id, chunk_prefix, path_doc_id
from ingest.loaders import load_file
from ingest.pipeline import ingest_files
from ingest.sources import expand_paths

# every section long enough (ESRAG_CHUNK_MIN_TOKENS) to be a chunk of its own
TEA = "Tea is an aromatic beverage made by pouring hot water over the cured leaves of the tea plant."
BLACK = "Black tea is fully oxidised before it is dried, which gives it a dark colour and a strong taste."
OOLONG = "Oolong is partly oxidised, somewhere between green tea and black tea in its colour and its taste."
RED = "Black tea is called red tea in China, after the colour of the drink rather than of the leaves."
GREEN = "Green tea is made from leaves that are not oxidised, so they keep their colour and a fresh taste."
MD = f"# Tea\n\n{TEA}\n\n## Black tea\n\n{BLACK}\n\n## Oolong\n\n{OOLONG}\n"


def _all_chunks(es: Elasticsearch, settings: Settings) -> dict[str, dict]:
    es.indices.refresh(index=settings.index)
    res = es.search(index=settings.index, size=1000, query={"match_all": {}})
    return {h["_id"]: h["_source"] for h in res["hits"]["hits"]}


def _corpus(root: Path) -> Path:
    root.mkdir()
    (root / "notes.txt").write_text("Kettles boil water.\n\nA watched pot never boils.\n")
    (root / "tea.md").write_text(MD)
    (root / "page.html").write_text(HTML_PAGE)
    (root / "old.htm").write_text(
        "<html><body><article><h1>Old page</h1><p>Legacy markup.</p></article></body></html>"
    )
    write_pdf(
        root / "report.pdf",
        [["Quarterly tea sales rose.", "Exports doubled."], ["Page two: imports."]],
        title="Tea report",
    )
    write_docx(
        root / "memo.docx",
        title="Memo",
        blocks=[("Title", "Office memo"), ("Heading 1", "Kitchen"), ("", "Clean the kettle on Fridays.")],
        table=[["day", "duty"], ["Fri", "kettle"]],
    )
    lines = [
        {
            "id": "q1",
            "text": "Matcha is powdered green tea.",
            "title": "Matcha",
            "lang": "en",
            "tags": ["jp"],
        },
        {"_id": "q2", "text": "Rooibos is not really tea.", "lang": "af"},
    ]
    (root / "corpus.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return root


def test_every_loader_indexes_exact_fields(es: Elasticsearch, settings: Settings, tmp_path: Path) -> None:
    root = _corpus(tmp_path / "docs")
    files = expand_paths([str(root)], settings)
    assert [f.name for f in files] == [
        "corpus.jsonl",
        "memo.docx",
        "notes.txt",
        "old.htm",
        "page.html",
        "report.pdf",
        "tea.md",
    ]
    summary = ingest_files(files, settings)
    # 8 documents: notes 1, tea.md 3 sections, page.html 2, old.htm 1, pdf 1, docx 1 (+table), jsonl 2
    assert summary.to_dict() | {"seconds": 0} == {
        "documents": 8,
        "chunks": 11,
        "indexed": 11,
        "skipped_unchanged": 0,
        "deleted": 0,
        "failed": [],
        "embedded": 11,
        "seconds": 0,
        "index": alias_target(es, settings.index),
    }
    chunks = _all_chunks(es, settings)
    assert len(chunks) == 11
    embedder = get_embedder(settings)
    counter = HFTokenCounter(embedder.tokenizer)
    by_doc: dict[str, list[dict]] = {}
    for cid, c in chunks.items():
        assert cid == c["chunk_id"]
        by_doc.setdefault(c["doc_id"], []).append(c)
    # every chunk's text is the exact span of its document's text, and its id is reproducible
    for f in files:
        for doc in load_file(f, settings.max_file_bytes):
            expected = chunk_document(
                doc,
                counter,
                max_tokens=settings.chunk_max_tokens,
                overlap=settings.chunk_overlap_tokens,
                min_tokens=settings.chunk_min_tokens,
                model_max_tokens=256,
            )
            stored = sorted(by_doc[doc.doc_id], key=lambda c: c["chunk_no"])
            assert [c["text"] for c in stored] == [doc.text[c.start : c.end] for c in expected]
            assert [c["start"] for c in stored] == [c.start for c in expected]
            for s, e in zip(stored, expected, strict=True):
                prefix = chunk_prefix(doc, settings.id_scope)  # a .jsonl id is scoped to its file
                assert s["chunk_id"] == chunk_id(prefix, e.chunk_no, chunk_hash(e.text, e.context))
                assert s["text"] == doc.text[s["start"] : s["end"]]
                assert s["text_stemmed"] == stem_text(s["text"], "english")
                assert s["model"] == "all-MiniLM-L6-v2" and len(s["embedding"]) == 384
                assert s["source"] == doc.source and s["title"] == doc.title
                assert s["modified"] == doc.modified
    notes = by_doc[path_doc_id(root / "notes.txt")][0]
    assert (notes["title"], notes["content_type"], notes["text"]) == (
        "notes",
        "text/plain",
        "Kettles boil water.\n\nA watched pot never boils.",
    )
    md = sorted(by_doc[path_doc_id(root / "tea.md")], key=lambda c: c["chunk_no"])
    assert [(c["text"], c["headings"]) for c in md] == [
        (TEA, ["Tea"]),
        (BLACK, ["Tea", "Black tea"]),
        (OOLONG, ["Tea", "Oolong"]),
    ]
    page = sorted(by_doc[path_doc_id(root / "page.html")], key=lambda c: c["chunk_no"])
    assert [(c["title"], c["text"], c["headings"]) for c in page] == [
        ("Tea Guide", GREEN, ["Green tea"]),
        (
            "Tea Guide",
            "Use water at 80 degrees for two minutes.\n\nsteep(leaves, minutes=2)\npour()\n\n"
            "Sencha\n\nGyokuro",
            ["Green tea", "Brewing"],
        ),
    ]
    old = by_doc[path_doc_id(root / "old.htm")][0]
    assert (old["title"], old["text"], old["content_type"]) == ("Old page", "Legacy markup.", "text/html")
    pdf = by_doc[path_doc_id(root / "report.pdf")][0]
    assert (pdf["title"], pdf["text"], pdf["content_type"]) == (
        "Tea report",
        "Quarterly tea sales rose.\nExports doubled.\n\nPage two: imports.",
        "application/pdf",
    )
    memo = by_doc[path_doc_id(root / "memo.docx")][0]
    assert (memo["title"], memo["text"], memo["headings"]) == (
        "Office memo",
        "Clean the kettle on Fridays.\n\nday | duty\n\nFri | kettle",
        ["Office memo", "Kitchen"],
    )
    q1, q2 = by_doc["q1"][0], by_doc["q2"][0]
    assert (q1["title"], q1["meta"], q1["content_type"]) == (
        "Matcha",
        {"lang": "en", "tags": ["jp"]},
        "application/jsonl",
    )
    assert (q2["title"], q2["meta"], q2["source"]) == (
        "",
        {"lang": "af"},
        str((root / "corpus.jsonl").resolve()),
    )
    # metadata is filterable, the stemmed field matches stemmed queries
    hits = es.search(index=settings.index, query={"term": {"meta.lang": "af"}})["hits"]["hits"]
    assert [h["_source"]["doc_id"] for h in hits] == ["q2"]
    stemmed = {"match": {"text_stemmed": stem_text("boiling", "english")}}
    hits = es.search(index=settings.index, query=stemmed)["hits"]["hits"]
    assert [h["_source"]["doc_id"] for h in hits] == [path_doc_id(root / "notes.txt")]


def test_reingest_skips_unchanged_without_embedding(
    es: Elasticsearch, settings: Settings, tmp_path: Path
) -> None:
    root = _corpus(tmp_path / "docs")
    files = expand_paths([str(root)], settings)
    first = ingest_files(files, settings)
    ids_before = set(_all_chunks(es, settings))
    second = ingest_files(files, settings)
    assert (first.indexed, first.embedded) == (11, 11)
    assert second.to_dict() | {"seconds": 0} == {
        "documents": 8,
        "chunks": 0,
        "indexed": 0,
        "skipped_unchanged": 8,
        "deleted": 0,
        "failed": [],
        "embedded": 0,
        "seconds": 0,
        "index": first.index,
    }
    assert set(_all_chunks(es, settings)) == ids_before


def test_changed_document_replaces_its_chunks(es: Elasticsearch, settings: Settings, tmp_path: Path) -> None:
    root = tmp_path / "docs"
    root.mkdir()
    tea, other = root / "tea.md", root / "other.txt"
    tea.write_text(MD)
    other.write_text("Unrelated text that stays the same.")
    ingest_files([tea, other], settings)
    tid = path_doc_id(tea)
    before = {cid for cid, c in _all_chunks(es, settings).items() if c["doc_id"] == tid}
    assert len(before) == 3
    tea.write_text(
        f"# Tea\n\n{TEA}\n\n## Black tea\n\n{RED}\n"
    )
    summary = ingest_files([tea, other], settings)
    old_first = chunk_id(tid, 0, chunk_hash(TEA, "Tea"))
    new_second = chunk_id(tid, 1, chunk_hash(RED, "Tea > Black tea"))
    after = {cid for cid, c in _all_chunks(es, settings).items() if c["doc_id"] == tid}
    assert after == {old_first, new_second}
    assert old_first in before and new_second not in before
    assert (
        summary.documents,
        summary.chunks,
        summary.indexed,
        summary.embedded,
        summary.deleted,
        summary.skipped_unchanged,
        summary.failed,
    ) == (2, 2, 2, 2, 2, 1, [])


def test_delete_by_doc_id_and_source(es: Elasticsearch, settings: Settings, tmp_path: Path, capsys) -> None:
    from ingest.pipeline import delete_documents

    root = _corpus(tmp_path / "docs")
    ingest_files(expand_paths([str(root)], settings), settings)
    assert delete_documents(settings, doc_ids=["q1", "q2"]) == 2
    rc = main(
        [
            "delete",
            "--source",
            str(root / "tea.md"),
            "--source",
            str(root / "notes.txt"),
            "--index",
            settings.index,
            "--json",
        ]
    )
    assert rc == 0
    assert json.loads(capsys.readouterr().out) == {"deleted": 4, "index": settings.index}
    left = {c["doc_id"] for c in _all_chunks(es, settings).values()}
    assert left == {path_doc_id(root / n) for n in ("page.html", "old.htm", "report.pdf", "memo.docx")}
    assert main(["delete", "--index", settings.index]) == 1
    assert capsys.readouterr().err == "error: nothing to delete: give --doc-id or --source\n"


def test_bad_inputs_are_reported_one_line_each(
    es: Elasticsearch, settings: Settings, tmp_path: Path, capsys, monkeypatch
) -> None:
    root = tmp_path / "mixed"
    root.mkdir()
    good = root / "good.txt"
    good.write_text("Good text survives.")
    assert main(["ingest", str(good), "--index", settings.index, "--json", "--local"]) == 0
    capsys.readouterr()
    (root / "corrupt.pdf").write_bytes(b"%PDF-1.4\nthis is not really a pdf\n")
    write_pdf(root / "locked.pdf", [["secret"]], password="pw")
    (root / "binary.txt").write_bytes(bytes(range(256)) * 4)
    (root / "empty.md").write_text("   \n")
    (root / "latin1.txt").write_bytes("café au lait".encode("latin-1"))
    (root / "huge.txt").write_text("word " * 600)
    (root / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (root / "rows.jsonl").write_text(
        '{"id": "r1", "text": "Row one."}\nnot json\n{"id": "r3"}\n{"text": "x"}\n'
    )
    monkeypatch.setenv("ESRAG_MAX_FILE_BYTES", "2000")
    rc = main(["ingest", str(root), str(root / "image.png"), "--index", settings.index, "--json", "--local"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 1
    assert sorted(out["failed"], key=lambda f: f["source"]) == [
        {"source": str(root / "binary.txt"), "error": "binary data, not text"},
        {"source": str(root / "corrupt.pdf"), "error": "corrupt PDF: Stream has ended unexpectedly"},
        {"source": str(root / "empty.md"), "error": "empty document (no text)"},
        {
            "source": str(root / "huge.txt"),
            "error": "file is 3000 bytes, over the limit of 2000 (ESRAG_MAX_FILE_BYTES)",
        },
        {"source": str(root / "image.png"), "error": "unsupported file type .png"},
        {"source": str(root / "locked.pdf"), "error": "encrypted PDF (a password is needed)"},
        {"source": f"{root / 'rows.jsonl'}:2", "error": "not valid JSON: Expecting value (column 1)"},
        {"source": f"{root / 'rows.jsonl'}:3", "error": 'no "text" string'},
        {"source": f"{root / 'rows.jsonl'}:4", "error": 'no "id" (or "_id") string'},
    ]
    assert {k: out[k] for k in ("documents", "chunks", "indexed", "skipped_unchanged", "deleted")} == {
        "documents": 3,
        "chunks": 2,
        "indexed": 2,
        "skipped_unchanged": 1,
        "deleted": 0,
    }
    texts = sorted(c["text"] for c in _all_chunks(es, settings).values())
    # nothing indexed before was lost; Latin-1 text is decoded (tests/integration/test_charsets.py)
    assert texts == ["Good text survives.", "Row one.", "café au lait"]


def test_human_summary_and_missing_paths(settings: Settings, tmp_path: Path, capsys) -> None:
    f = tmp_path / "a.txt"
    f.write_text("Hello there.")
    assert main(["ingest", str(f), "--index", settings.index, "--local"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("1 chunks indexed from 1 documents into ")
    assert main(["ingest", str(tmp_path / "nope.txt"), "--index", settings.index, "--local"]) == 1
    assert capsys.readouterr().err == f"error: {tmp_path / 'nope.txt'}: no such file or directory\n"
    assert main(["ingest", str(tmp_path / "*.pdf"), "--index", settings.index, "--local"]) == 1
    assert capsys.readouterr().err == f"error: {tmp_path / '*.pdf'}: no files match this pattern\n"


def test_model_mismatch_is_refused(es: Elasticsearch, settings: Settings, tmp_path: Path, capsys) -> None:
    name = create_index(es, settings, ModelInfo("other-model", 384))
    es.indices.update_aliases(
        actions=[{"add": {"index": name, "alias": settings.index, "is_write_index": True}}]
    )
    f = tmp_path / "a.txt"
    f.write_text("Hello there.")
    rc = main(["ingest", str(f), "--index", settings.index, "--json", "--local"])
    assert rc == 4
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"error: index {name} was built with model other-model (384d, fp32) but the configured embedder is "
        "all-MiniLM-L6-v2 (384d, fp32) [model 'other-model' vs 'all-MiniLM-L6-v2']; run "
        "`esrag reindex --model all-MiniLM-L6-v2` to rebuild the index for it, or set "
        "ESRAG_EMBED_MODEL=other-model ESRAG_EMBED_PRECISION=fp32 to use it as built\n"
    )
    es.indices.refresh(index=name)
    assert es.count(index=name)["count"] == 0


def _refresh_interval(es: Elasticsearch, index: str) -> str | None:
    got = es.indices.get_settings(index=index, name="index.refresh_interval")
    return got.get(index, {}).get("settings", {}).get("index", {}).get("refresh_interval")


def test_refresh_interval_off_during_load_and_restored(
    es: Elasticsearch, settings: Settings, tmp_path: Path
) -> None:
    root = _corpus(tmp_path / "docs")
    files = expand_paths([str(root)], settings)
    seen: list[str | None] = []
    summary = ingest_files(
        files,
        settings,
        refresh_off_after=1,
        progress=lambda ev: seen.append(_refresh_interval(es, alias_target(es, settings.index))),
    )
    assert "-1" in seen
    assert _refresh_interval(es, summary.index) is None

    def boom(ev):
        if ev.indexed:
            raise RuntimeError("progress callback failed")

    (root / "notes.txt").write_text("Changed so that it is written again.")
    with pytest.raises(RuntimeError, match="progress callback failed"):
        ingest_files(files, settings, refresh_off_after=1, progress=boom)
    assert _refresh_interval(es, summary.index) is None

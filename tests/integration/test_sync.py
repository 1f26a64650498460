"""`esrag ingest ROOT --sync`: files removed from ROOT stop being searchable, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch
from fastapi.testclient import TestClient

from esrag.cli import main
from esrag.settings import Settings
from ingest.documents import path_doc_id
from query.retrieval import search
from server.app import create_app

GONE = "Zeppelins drift over the harbour at dawn carrying saffron crates."


@pytest.mark.timeout(600)
def test_sync_deletes_documents_whose_file_is_gone(
    es: Elasticsearch, settings: Settings, tmp_path: Path, capsys, monkeypatch
) -> None:
    root = tmp_path / "docs"
    (root / "sub").mkdir(parents=True)
    (root / "keep.txt").write_text("Kettles boil water for tea in the kitchen.\n")
    (root / "sub" / "gone.md").write_text(f"# Airships\n\n{GONE}\n")
    outside = tmp_path / "outside.txt"  # not under ROOT: --sync leaves it alone
    outside.write_text("Saffron is a spice from crocus flowers.\n")
    assert main(["ingest", "--local", "--json", "--index", settings.index, str(root), str(outside)]) == 0
    capsys.readouterr()
    gone_path = root / "sub" / "gone.md"
    assert [h.source for h in search(settings, "zeppelins saffron", mode="bm25", k=5, client=es)][:1] == [
        str(gone_path.resolve())]
    gone_query = {"term": {"source": str(gone_path.resolve())}}
    chunks_of_gone = es.count(index=settings.index, query=gone_query)["count"]
    gone_path.unlink()
    outside.unlink()

    assert main(["ingest", "--local", "--json", "--sync", "--index", settings.index, str(root)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["documents"], out["skipped_unchanged"], out["deleted"]) == (1, 1, chunks_of_gone)
    assert out["deleted_sources"] == [str(gone_path.resolve())]

    sources = {h.source for mode in ("bm25", "dense", "hybrid")
               for h in search(settings, "zeppelins drift over the harbour", mode=mode, k=20, client=es)}
    assert str(gone_path.resolve()) not in sources
    assert str(outside.resolve()) in sources  # outside ROOT: not synced
    monkeypatch.setenv("ESRAG_INDEX", settings.index)
    assert main(["ask", "What do zeppelins carry at dawn?", "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert GONE not in answer["answer"]
    assert all(c["doc_id"] != path_doc_id(gone_path) and GONE not in c["text"] for c in answer["citations"])
    with TestClient(create_app(settings), base_url="http://localhost") as api:  # keyless: loopback Host
        resp = api.get(f"/v1/documents/{path_doc_id(gone_path)}")
        assert resp.status_code == 404
        assert api.get(f"/v1/documents/{path_doc_id(root / 'keep.txt')}").status_code == 200
    # a second sync finds nothing more to delete
    assert main(["ingest", "--local", "--json", "--sync", "--index", settings.index, str(root)]) == 0
    again = json.loads(capsys.readouterr().out)
    assert (again["deleted"], again["deleted_sources"]) == (0, [])

"""Text files that are not UTF-8 are decoded with charset detection and indexed."""

from __future__ import annotations

from pathlib import Path

from elasticsearch import Elasticsearch
from elasticsearch.helpers import scan

from esrag.settings import Settings
from ingest.pipeline import ingest_files

LATIN1 = "Crème brûlée, naïve façade and café au lait: déjà vu in Zürich.\n"
CP1252 = "The “smart quotes” cost €5 — a dash, an ellipsis… and œuvre.\n"
CP1251 = ("Привет, мир! Это обычный русский текст в старой кодировке Windows. " * 2).strip() + "\n"


def _by_name(es: Elasticsearch, alias: str) -> dict[str, dict]:
    es.indices.refresh(index=alias)
    return {Path(h["_source"]["source"]).name: h["_source"]
            for h in scan(es, index=alias, query={"query": {"term": {"chunk_no": 0}}})}


def test_latin1_cp1252_and_cp1251_files_are_decoded_and_indexed(
    es: Elasticsearch, settings: Settings, tmp_path: Path
) -> None:
    (tmp_path / "latin1.txt").write_bytes(LATIN1.encode("latin-1"))
    (tmp_path / "cp1252.md").write_bytes(("# Prices\n\n" + CP1252).encode("cp1252"))
    (tmp_path / "cyrillic.txt").write_bytes(CP1251.encode("cp1251"))
    (tmp_path / "utf8.txt").write_text("Plain UTF-8 text stays as it is: naïve.\n", encoding="utf-8")
    (tmp_path / "blob.txt").write_bytes(bytes(range(256)) * 8)
    files = sorted(tmp_path.iterdir())
    summary = ingest_files(files, settings)
    assert summary.failed == [{"source": str(tmp_path / "blob.txt"), "error": "binary data, not text"}]
    assert summary.documents == 4
    got = _by_name(es, settings.index)
    assert got["latin1.txt"]["text"] == LATIN1.strip()
    # Latin-1 bytes read the same in windows-1252 (its superset for text), the name reported
    assert got["latin1.txt"]["meta"] == {"encoding": "cp1252"}
    assert got["cp1252.md"]["text"] == CP1252.strip()
    assert got["cp1252.md"]["meta"] == {"encoding": "cp1252"}
    assert got["cp1252.md"]["headings"] == ["Prices"]
    assert got["cyrillic.txt"]["text"] == CP1251.strip()
    assert got["cyrillic.txt"]["meta"] == {"encoding": "cp1251"}
    assert "meta" not in got["utf8.txt"]

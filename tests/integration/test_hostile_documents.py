"""Hostile documents through the real ingest pipeline: each bomb becomes one failure line.

Zip bomb inside a .docx, PDF with a huge FlateDecode stream, a 200 MB one-line .txt,
100k-deep nested HTML, a parse over the time budget and one over the memory budget; the
good file next to them is still indexed.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import pytest
from pypdf import PdfWriter
from pypdf.generic import NameObject, StreamObject

from esrag.settings import Settings
from ingest.guards import Limits
from ingest.pipeline import ingest_files
from ingest.sandbox import Sandbox

pytestmark = pytest.mark.timeout(240)


def zip_bomb_docx(path: Path, inflated: int = 256 * 1024 * 1024) -> Path:
    """A .docx of a few hundred KB whose document.xml inflates to ``inflated`` bytes."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("[Content_Types].xml", "<Types/>")
        with zf.open("word/document.xml", "w", force_zip64=True) as fh:
            block = b"\0" * (8 * 1024 * 1024)
            for _ in range(inflated // len(block)):
                fh.write(block)
    return path


def flate_bomb_pdf(path: Path, inflated: int = 200 * 1024 * 1024) -> Path:
    """A one-page PDF whose content stream is a FlateDecode stream inflating to ``inflated`` bytes."""
    comp = zlib.compressobj(9)
    block = b" " * (8 * 1024 * 1024)
    data = b"".join(comp.compress(block) for _ in range(inflated // len(block))) + comp.flush()
    writer = PdfWriter()
    page = writer.add_blank_page(612, 792)
    stream = StreamObject()
    stream._data = data
    stream[NameObject("/Filter")] = NameObject("/FlateDecode")
    page[NameObject("/Contents")] = writer._add_object(stream)
    with path.open("wb") as fh:
        writer.write(fh)
    return path


def deep_html(path: Path, depth: int = 100_000) -> Path:
    path.write_text("<html><body>" + "<div>" * depth + "deep text" + "</div>" * depth + "</body></html>")
    return path


def one_line_txt(path: Path, size: int) -> Path:
    with path.open("wb") as fh:
        block = b"a" * (1024 * 1024)
        for _ in range(size // len(block)):
            fh.write(block)
    return path


def _failures(summary) -> dict[str, str]:
    out = {Path(f["source"]).name: f["error"] for f in summary.failed}
    assert all("\n" not in e for e in out.values())
    return out


def test_bombs_fail_with_one_line_each_and_good_files_still_index(settings: Settings, tmp_path: Path):
    docs = tmp_path / "docs"
    docs.mkdir()
    zip_bomb_docx(docs / "bomb.docx", inflated=128 * 1024 * 1024)
    flate_bomb_pdf(docs / "bomb.pdf")
    deep_html(docs / "deep.html")
    one_line_txt(docs / "line.txt", 200 * 1024 * 1024)
    (docs / "good.txt").write_text("A good document about sourdough bread.")
    assert (docs / "bomb.docx").stat().st_size < 1024 * 1024
    assert (docs / "bomb.pdf").stat().st_size < 1024 * 1024
    summary = ingest_files(sorted(docs.iterdir()), settings)
    fails = _failures(summary)
    assert summary.indexed == 1 and summary.documents == 1
    assert sorted(fails) == ["bomb.docx", "bomb.pdf", "deep.html", "line.txt"]
    assert fails["bomb.docx"] == ("zip member 'word/document.xml' has a compression ratio over 200 "
                                  "(a zip bomb? ESRAG_MAX_ZIP_RATIO)")
    assert fails["bomb.pdf"].startswith("PDF over a decoding limit (a PDF bomb? ESRAG_MAX_PDF_STREAM_BYTES)")
    assert fails["deep.html"] == "HTML is nested over 200 levels deep (ESRAG_MAX_HTML_DEPTH)"
    assert fails["line.txt"] == (f"file is {200 * 1024 * 1024} bytes, over the limit of {50 * 1024 * 1024} "
                                 "(ESRAG_MAX_FILE_BYTES)")


def test_zip_total_size_budget(settings: Settings, tmp_path: Path):
    path = zip_bomb_docx(tmp_path / "big.docx", inflated=8 * 1024 * 1024)
    small = settings.model_copy(update={"max_docx_uncompressed_bytes": 4 * 1024 * 1024,
                                        "max_zip_ratio": 10**6})
    fails = _failures(ingest_files([path], small))
    assert fails == {"big.docx": f"zip would inflate to {8 * 1024 * 1024 + 8} bytes, over the limit of "
                                 f"{4 * 1024 * 1024} (ESRAG_MAX_DOCX_UNCOMPRESSED_BYTES)"}


def test_memory_budget_stops_a_huge_line_when_size_allows_it(tmp_path: Path):
    path = one_line_txt(tmp_path / "line.txt", 200 * 1024 * 1024)
    with Sandbox(300 * 1024 * 1024, Limits(), timeout=60, memory_mb=256) as sandbox:
        (err,) = sandbox.load(path)
        assert err.message == "parsing needed more than the memory budget of 256 MB (ESRAG_PARSE_MEMORY_MB)"
        good = tmp_path / "ok.txt"
        good.write_text("still parses after the bomb")
        (doc,) = sandbox.load(good)
        assert doc.text == "still parses after the bomb"


def test_time_budget_kills_a_slow_parse_and_the_next_file_parses(tmp_path: Path):
    slow = one_line_txt(tmp_path / "slow.txt", 48 * 1024 * 1024)
    good = tmp_path / "ok.txt"
    good.write_text("parsed by a fresh child")
    with Sandbox(64 * 1024 * 1024, Limits(), timeout=30, memory_mb=0) as sandbox:
        sandbox.load(good)  # the child is up
        sandbox.timeout = 0.01
        (err,) = sandbox.load(slow)
        assert err.message == "parsing took over 0.01 s (ESRAG_PARSE_TIMEOUT)"
        assert sandbox.proc is None
        sandbox.timeout = 30
        (doc,) = sandbox.load(good)
        assert doc.text == "parsed by a fresh child"

"""Property tests: every loader and the chunker on random and mangled input.

Whatever the bytes, a loader yields Documents or LoadErrors with a one-line reason (never
another exception), and the chunker returns exact, in-bounds spans.
"""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.chunking import chunk_document
from ingest.documents import Document, LoadError
from ingest.loaders import load_file
from tests.ingest_samples import write_pdf

SUFFIXES = [".txt", ".md", ".html", ".pdf", ".docx", ".jsonl"]
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _check(items: list[Document | LoadError], suffix: str = "") -> None:
    assert items or suffix == ".jsonl", "a loader yields at least one item (a .jsonl of blank lines: none)"
    for item in items:
        if isinstance(item, LoadError):
            assert item.message and "\n" not in item.message and len(item.message) <= 400
            # load_file's last-resort catch-all ("cannot parse <type>: <exception>") would hide any
            # crash; every failure on these inputs must come from a loader's own checks instead
            assert not item.message.startswith("cannot parse "), item.message
        else:
            assert isinstance(item, Document) and item.text.strip()


def _load(tmp: Path, name: str, data: bytes) -> list[Document | LoadError]:
    path = tmp / name
    path.write_bytes(data)
    return list(load_file(path, 10 * 1024 * 1024))


@pytest.fixture(scope="module")
def seeds(tmp_path_factory) -> dict[str, bytes]:
    """Real small files of each format, to mangle."""
    tmp = tmp_path_factory.mktemp("seeds")
    import docx

    d = docx.Document()
    d.add_heading("Seed", 1)
    d.add_paragraph("A paragraph of the seed document.")
    d.save(tmp / "s.docx")
    write_pdf(tmp / "s.pdf", [["Seed page one text."], ["Page two."]], title="Seed")
    return {
        ".docx": (tmp / "s.docx").read_bytes(),
        ".pdf": (tmp / "s.pdf").read_bytes(),
        ".html": b"<html><head><title>T</title></head><body><main><h1>H</h1><p>Text.</p></main></body>",
        ".md": b"# Title\n\nSome *markdown* text.\n\n```\ncode\n```\n",
        ".txt": b"plain text\n",
        ".jsonl": b'{"id": "a", "text": "x"}\n{"id": 2, "text": "y", "k": [1]}\n',
    }


@FUZZ
@given(suffix=st.sampled_from(SUFFIXES), data=st.binary(max_size=4096))
def test_random_bytes_never_crash(tmp_path, suffix, data):
    _check(_load(tmp_path, f"f{suffix}", data), suffix)


@FUZZ
@given(suffix=st.sampled_from(SUFFIXES), data=st.data())
def test_mangled_real_files_never_crash(tmp_path, seeds, suffix, data):
    raw = bytearray(seeds[suffix])
    for _ in range(data.draw(st.integers(1, 8))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        pos = data.draw(st.integers(0, max(0, len(raw) - 1)))
        if op == "flip" and raw:
            raw[pos] = data.draw(st.integers(0, 255))
        elif op == "cut":
            del raw[pos:pos + data.draw(st.integers(1, 64))]
        else:
            raw[pos:pos] = data.draw(st.binary(min_size=1, max_size=64))
    _check(_load(tmp_path, f"f{suffix}", bytes(raw)), suffix)


@FUZZ
@given(members=st.dictionaries(st.sampled_from(["[Content_Types].xml", "word/document.xml", "_rels/.rels",
                                                "word/_rels/document.xml.rels", "docProps/core.xml"]),
                               st.binary(max_size=512), max_size=5))
def test_docx_zips_with_random_members_never_crash(tmp_path, members):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, body in members.items():
            zf.writestr(name, body)
    _check(_load(tmp_path, "z.docx", buf.getvalue()))


_TAGS = st.sampled_from(["div", "p", "main", "article", "h1", "h2", "pre", "table", "td", "script", "nav",
                         "br", "span", "!--", "?xml", "body", "html", "title", "meta charset=latin-1"])


@FUZZ
@given(parts=st.lists(st.one_of(_TAGS.map(lambda t: f"<{t}>"), _TAGS.map(lambda t: f"</{t}>"),
                                st.text(max_size=20)), max_size=60))
def test_tag_soup_html_never_crashes(tmp_path, parts):
    _check(_load(tmp_path, "soup.html", "".join(parts).encode("utf-8", "surrogatepass")))


class _Words:
    def count(self, texts):
        return [len(t.split()) for t in texts]

    def offsets(self, text):
        return [m.span() for m in re.finditer(r"\S+", text)]


@settings(max_examples=150, deadline=None)
@given(text=st.text(st.characters(codec="utf-8"), min_size=1, max_size=3000),
       max_tokens=st.integers(16, 64), overlap=st.integers(0, 20), min_tokens=st.integers(0, 8))
def test_chunker_spans_are_exact_and_in_bounds(text, max_tokens, overlap, min_tokens):
    doc = Document(doc_id="d", source="/x", title="t", content_type="text/plain", text=text)
    chunks = chunk_document(doc, _Words(), max_tokens=max_tokens, overlap=overlap, min_tokens=min_tokens,
                            model_max_tokens=512)
    for n, c in enumerate(chunks):
        assert c.chunk_no == n
        assert 0 <= c.start < c.end <= len(text)
        assert c.text == text[c.start:c.end]
    if text.strip():
        assert chunks


# Large inputs: random pieces (any Unicode, paragraph breaks, headings, long words) repeated
# 20 to 400 times, or 10 to 40 of them joined: 500 to ~800,000 characters, where the small-input
# test above stops at 3,000.
_PIECE = st.lists(st.one_of(st.characters(codec="utf-8"), st.sampled_from(["\n\n", "\n# ", " ", "x" * 50])),
                  min_size=50, max_size=400).map("".join)
_LARGE = st.one_of(st.tuples(_PIECE, st.integers(20, 400)).map(lambda t: t[0] * t[1]),
                   st.lists(_PIECE, min_size=10, max_size=40).map("".join))


def _covered(chunks: list, spans: list[tuple[int, int]]) -> bool:
    """Every span lies inside the union of the chunks' spans."""
    merged: list[list[int]] = []
    for c in sorted(chunks, key=lambda c: c.start):
        if merged and c.start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], c.end)
        else:
            merged.append([c.start, c.end])
    return all(any(s <= a and b <= e for s, e in merged) for a, b in spans)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(text=_LARGE, max_tokens=st.integers(16, 256), overlap=st.integers(0, 32))
def test_chunker_spans_are_exact_on_large_inputs(text, max_tokens, overlap):
    doc = Document(doc_id="d", source="/x", title="t", content_type="text/plain", text=text)
    chunks = chunk_document(doc, _Words(), max_tokens=max_tokens, overlap=overlap, min_tokens=16,
                            model_max_tokens=512)
    assert [c.chunk_no for c in chunks] == list(range(len(chunks)))
    for c in chunks:
        assert 0 <= c.start < c.end <= len(text) and c.text == text[c.start:c.end]
    words = [m.span() for m in re.finditer(r"\S+", text)]
    assert bool(chunks) == bool(words)
    assert _covered(chunks, words[:: max(1, len(words) // 300)])  # no text is dropped


def test_chunker_one_long_line_without_spaces():
    text = "x" * 2_000_000
    doc = Document(doc_id="d", source="/x", title="t", content_type="text/plain", text=text)
    chunks = chunk_document(doc, _Words(), max_tokens=64, overlap=8, min_tokens=16, model_max_tokens=512)
    assert "".join(c.text for c in chunks) == text


@settings(max_examples=200, deadline=None)
@given(sections=st.lists(st.tuples(st.integers(1, 3), st.lists(st.integers(0, 12), max_size=4)), max_size=12),
       max_tokens=st.integers(16, 40), overlap=st.integers(0, 8), min_tokens=st.integers(1, 8))
def test_chunker_merges_small_sections_without_losing_text(sections, max_tokens, overlap, min_tokens):
    from ingest.loaders import markdown_headings

    parts, words = [], 0
    for n, (level, paras) in enumerate(sections):
        parts.append("#" * level + f" H{n}")
        for size in paras:
            if size:
                parts.append(" ".join(f"w{words + i}" for i in range(size)))
                words += size
    text = "\n\n".join(parts)
    doc = Document(doc_id="d", source="/x", title="", content_type="text/markdown", text=text,
                   headings=markdown_headings(text))
    chunks = chunk_document(doc, _Words(), max_tokens=max_tokens, overlap=overlap, min_tokens=min_tokens,
                            model_max_tokens=512)
    covered = set()
    for c in chunks:
        assert c.text == text[c.start:c.end]
        assert c.tokens == len(c.text.split())
        assert c.tokens <= max_tokens + min_tokens - 1
        covered.update(w for w in c.text.split() if w.startswith("w"))
    assert covered == {f"w{i}" for i in range(words)}  # no body text lost
    if len(chunks) > 1:
        assert all(c.tokens >= min_tokens for c in chunks)


def test_a_docx_with_a_corrupt_deflate_stream_is_one_line_naming_the_format(tmp_path, seeds):
    """Found by the mangling test above: zlib's own error escaped the DOCX loader's checks."""
    raw = bytearray(seeds[".docx"])
    with zipfile.ZipFile(io.BytesIO(bytes(raw))) as zf:
        info = zf.getinfo("word/document.xml")
    # the member's compressed data starts after its local header (30 bytes, name, extra field)
    extra = int.from_bytes(raw[info.header_offset + 28:info.header_offset + 30], "little")
    start = info.header_offset + 30 + len(info.filename) + extra
    raw[start:start + 8] = b"\xff" * 8  # an invalid deflate block header
    items = _load(tmp_path, "bad.docx", bytes(raw))
    assert len(items) == 1 and isinstance(items[0], LoadError)
    assert items[0].message.startswith("not a valid DOCX file: "), items[0].message

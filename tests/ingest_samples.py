"""Small real input files for the ingest tests: PDF (pypdf), DOCX (python-docx), HTML, ..."""

from __future__ import annotations

from pathlib import Path

from pypdf import PdfWriter
from pypdf.generic import DictionaryObject, NameObject, StreamObject


def _pdf_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def write_pdf(
    path: Path, pages: list[list[str]], *, title: str | None = None, password: str | None = None
) -> Path:
    """A PDF with Helvetica text, one list of lines per page (optionally encrypted)."""
    writer = PdfWriter()
    font = writer._add_object(
        DictionaryObject(
            {
                NameObject("/Type"): NameObject("/Font"),
                NameObject("/Subtype"): NameObject("/Type1"),
                NameObject("/BaseFont"): NameObject("/Helvetica"),
            }
        )
    )
    for lines in pages:
        page = writer.add_blank_page(612, 792)
        ops = ["BT", "/F1 12 Tf", "14 TL", "72 720 Td"]
        for line in lines:
            ops.append(f"({_pdf_escape(line)}) Tj T*")
        ops.append("ET")
        stream = StreamObject()
        stream.set_data("\n".join(ops).encode("latin-1"))
        page[NameObject("/Contents")] = writer._add_object(stream)
        page[NameObject("/Resources")] = DictionaryObject(
            {
                NameObject("/Font"): DictionaryObject({NameObject("/F1"): font}),
            }
        )
    if title:
        writer.add_metadata({"/Title": title})
    if password:
        writer.encrypt(password, algorithm="RC4-128")
    with path.open("wb") as fh:
        writer.write(fh)
    return path


def write_docx(
    path: Path, *, title: str, blocks: list[tuple[str, str]], table: list[list[str]] | None = None
) -> Path:
    """A DOCX: ``blocks`` are (style, text) with style "Title", "Heading N" or "" (body)."""
    import docx

    document = docx.Document()
    document.core_properties.title = title
    for style, text in blocks:
        if style == "Title":
            document.add_heading(text, level=0)
        elif style.startswith("Heading"):
            document.add_heading(text, level=int(style.split()[1]))
        else:
            document.add_paragraph(text)
    if table:
        t = document.add_table(rows=len(table), cols=len(table[0]))
        for r, row in enumerate(table):
            for c, cell in enumerate(row):
                t.cell(r, c).text = cell
    document.save(str(path))
    return path


HTML_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Tea Guide</title>
<script>var tracking = "do not index me";</script><style>body {color: red}</style></head>
<body>
<nav><a href="/">Home</a> <a href="/shop">Shop nav link</a></nav>
<div class="sidebar">Sidebar advert text</div>
<main>
<h1>Green tea<a class="headerlink" href="#g">¶</a></h1>
<p>Green tea is made from leaves that are <b>not oxidised</b>, so they keep their colour
and a fresh taste.</p>
<h2>Brewing</h2>
<p>Use water at 80 degrees for two minutes.</p>
<pre>steep(leaves, minutes=2)
pour()</pre>
<ul><li>Sencha</li><li>Gyokuro</li></ul>
</main>
<footer>Copyright footer text</footer>
</body></html>
"""

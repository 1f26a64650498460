"""File loaders: each turns one file into documents (a .jsonl file into one per line).

Loaders raise LoadError with a one-line reason for input they cannot read; a .jsonl file
yields its bad lines as LoadError items so that the good lines are still indexed.
"""

from __future__ import annotations

import bisect
import io
import json
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from esrag.errors import one_line
from ingest.documents import Document, Heading, LoadError, path_doc_id
from ingest.guards import DEFAULT_LIMITS, Limits, check_html_depth, check_pdf_pages, check_text, check_zip

CONTENT_TYPES = {
    ".txt": "text/plain",
    ".text": "text/plain",
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".html": "text/html",
    ".htm": "text/html",
    ".pdf": "application/pdf",
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ".jsonl": "application/jsonl",
}
SUPPORTED_SUFFIXES = frozenset(CONTENT_TYPES)

# The heading text is taken up to the end of the line and its closing #s stripped in
# Python: a lazy (.+?) before [ \t#]*$ rescans a run of spaces or #s once per character.
_MD_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+)$", re.MULTILINE)
_MD_FENCE = re.compile(r"^(```|~~~)", re.MULTILINE)
_CONTROL = re.compile(rb"[\x00-\x08\x0e-\x1f]")
_RESERVED_JSONL_KEYS = ("id", "_id", "text", "title")


def _mtime(path: Path) -> str:
    return datetime.fromtimestamp(path.stat().st_mtime, tz=UTC).isoformat()


def check_size(path: Path, max_bytes: int) -> int:
    """The file's size; LoadError when it is over ``max_bytes``."""
    size = path.stat().st_size
    if size > max_bytes:
        raise LoadError(
            str(path), f"file is {size} bytes, over the limit of {max_bytes} (ESRAG_MAX_FILE_BYTES)"
        )
    return size


LEGACY_DEFAULT = "cp1252"  # the web's default legacy encoding (WHATWG maps latin-1 labels to it)
LEGACY_MAX_MESS = 0.2  # charset-normalizer's mess ratio up to which the legacy default is taken


def decode_text(path: Path, data: bytes) -> tuple[str, str | None]:
    """Text of ``data`` and, when it is not UTF-8, the encoding detected; LoadError for binary data.

    UTF-8 (with or without a BOM) is taken as is. Otherwise windows-1252 is taken when it
    decodes the bytes into text that charset-normalizer finds clean (Latin-1 and cp1252
    files, the common case), else charset-normalizer's best guess; only bytes no
    encoding turns into text are refused.
    """
    sample = data[:8192]
    if b"\x00" in sample or len(_CONTROL.findall(sample)) > max(8, len(sample) // 100):
        raise LoadError(str(path), "binary data, not text")
    try:
        return data.decode("utf-8-sig"), None
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes
    from charset_normalizer.md import mess_ratio

    try:
        legacy = data.decode(LEGACY_DEFAULT)
    except UnicodeDecodeError:
        legacy = None
    if legacy is not None and mess_ratio(legacy[:100_000], maximum_threshold=1.0) <= LEGACY_MAX_MESS:
        return legacy, LEGACY_DEFAULT
    best = from_bytes(data).best()
    if best is None:
        raise LoadError(str(path), "not text: no character encoding decodes it (binary data?)")
    return str(best), best.encoding


def _require_text(path: Path, text: str) -> None:
    if not text.strip():
        raise LoadError(str(path), "empty document (no text)")


def _base(path: Path, content_type: str, title: str, text: str, headings: list[Heading]) -> Document:
    return Document(
        doc_id=path_doc_id(path), source=str(path.resolve()), title=title or path.stem,
        content_type=content_type, text=text, modified=_mtime(path), headings=headings,
    )


def _with_encoding(doc: Document, encoding: str | None) -> Document:
    """Record a detected (non-UTF-8) encoding in the document's metadata."""
    if encoding is not None:
        doc.metadata["encoding"] = encoding
    return doc


def load_text(path: Path, limits: Limits = DEFAULT_LIMITS) -> Document:
    """A plain-text file; its title is the file name."""
    text, encoding = decode_text(path, path.read_bytes())
    _require_text(path, text)
    return _with_encoding(_base(path, "text/plain", path.stem, text, []), encoding)


def markdown_headings(text: str) -> list[Heading]:
    """ATX headings (``# Title``) outside fenced code blocks."""
    fenced: list[tuple[int, int]] = []
    opened: int | None = None
    for m in _MD_FENCE.finditer(text):
        if opened is None:
            opened = m.start()
        else:
            fenced.append((opened, m.end()))
            opened = None
    if opened is not None:
        fenced.append((opened, len(text)))
    fence_starts = [a for a, _ in fenced]
    heads = []
    for m in _MD_HEADING.finditer(text):
        k = bisect.bisect_right(fence_starts, m.start()) - 1  # the last fence opened before it
        if k >= 0 and m.start() < fenced[k][1]:
            continue
        body = m.group(2)
        title = body.rstrip(" \t#") or body[:1]
        heads.append(Heading(m.start(), m.end(), len(m.group(1)), title.strip()))
    return heads


def load_markdown(path: Path, limits: Limits = DEFAULT_LIMITS) -> Document:
    """A Markdown file, kept verbatim; ATX headings give the structure, the first H1 the title."""
    text, encoding = decode_text(path, path.read_bytes())
    _require_text(path, text)
    heads = markdown_headings(text)
    title = next((h.text for h in heads if h.level == 1), path.stem)
    return _with_encoding(_base(path, "text/markdown", title, text, heads), encoding)


def load_html(path: Path, limits: Limits = DEFAULT_LIMITS) -> Document:
    """An HTML page's main content (boilerplate removed), paragraphs and headings kept."""
    from lxml.etree import ParserError, XMLSyntaxError

    from ingest.html import decode_html, html_to_text

    data = path.read_bytes()
    if b"\x00" in data[:8192]:
        raise LoadError(str(path), "binary data, not HTML")
    try:
        title, text, heads = html_to_text(decode_html(data),
                                          check=lambda root: check_html_depth(path, root, limits))
    except ValueError as exc:
        raise LoadError(str(path), one_line(exc, 300, typed=False)) from None
    except (ParserError, XMLSyntaxError) as exc:  # e.g. nothing but a comment: "Document is empty"
        raise LoadError(str(path), f"not parseable as HTML: {one_line(exc, 300, typed=False)}") from None
    except RecursionError:
        raise LoadError(str(path), "HTML is nested too deeply") from None
    _require_text(path, text)
    return _base(path, "text/html", title, text, heads)


def load_pdf(path: Path, limits: Limits = DEFAULT_LIMITS) -> Document:
    """A PDF's text, page by page (pages separated by blank lines)."""
    from pypdf import PdfReader, apply_configuration
    from pypdf.errors import FileNotDecryptedError, LimitReachedError, PdfReadError, PyPdfError

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # the failure is reported once, below
    cap = limits.max_pdf_stream_bytes
    with apply_configuration(
        maximum_declared_stream_length=cap, zlib_maximum_output_length=cap, lzw_maximum_output_length=cap,
        run_length_maximum_output_length=cap, brotli_maximum_output_length=cap,
        array_based_stream_maximum_output_length=cap,
    ):
        try:
            reader = PdfReader(io.BytesIO(path.read_bytes()))
            if reader.is_encrypted:
                try:
                    ok = reader.decrypt("")
                except Exception:
                    ok = 0
                if not ok:
                    raise LoadError(str(path), "encrypted PDF (a password is needed)")
            check_pdf_pages(path, len(reader.pages), limits)
            pages, chars = [], 0
            for page in reader.pages:
                contents = page.get_contents()  # decoded first: extract_text hides a decoding limit
                if contents is not None:
                    contents.get_data()
                pages.append((page.extract_text() or "").strip())
                chars += len(pages[-1])
                check_text(path, chars, limits)
            meta_title = (reader.metadata.title if reader.metadata else None) or ""
        except LoadError:
            raise
        except LimitReachedError as exc:
            raise LoadError(str(path), f"PDF over a decoding limit (a PDF bomb? ESRAG_MAX_PDF_STREAM_BYTES): "
                                       f"{one_line(exc, 300, typed=False)}") from None
        except FileNotDecryptedError:
            raise LoadError(str(path), "encrypted PDF (a password is needed)") from None
        except (PyPdfError, PdfReadError, ValueError, KeyError, TypeError, AttributeError, OSError,
                RecursionError, ZeroDivisionError, IndexError) as exc:
            raise LoadError(str(path), f"corrupt PDF: {one_line(exc, 300, typed=False)}") from None
    text = "\n\n".join(p for p in pages if p)
    _require_text(path, text)
    return _base(path, "application/pdf", str(meta_title).strip(), text, [])


def load_docx(path: Path, limits: Limits = DEFAULT_LIMITS) -> Document:
    """A Word document: paragraphs and tables in order; Heading N styles give the structure."""
    import zipfile
    import zlib

    import docx
    from docx.exceptions import PythonDocxError
    from docx.opc.exceptions import OpcError
    from docx.table import Table
    from lxml.etree import XMLSyntaxError

    from ingest.html import TextBuilder

    check_zip(path, limits)
    try:
        document = docx.Document(str(path))
        out = TextBuilder()
        title = ""
        for block in document.iter_inner_content():
            if isinstance(block, Table):
                for row in block.rows:
                    cells = [" ".join(c.text.split()) for c in row.cells]
                    out.inline.append(" | ".join(c for c in cells if c))
                    out.flush()
                continue
            style = (block.style.name if block.style is not None else "") or ""
            text = " ".join(block.text.split())
            if not text:
                continue
            if style == "Title" and not title:
                title = text
                out.add_block(text, 0)
            elif style.startswith("Heading") and style[7:].strip().isdigit():
                out.add_block(text, int(style[7:].strip()))
            else:
                out.add_block(text)
        text = out.text()
        title = title or (document.core_properties.title or "")
    except (zipfile.BadZipFile, zlib.error, EOFError, KeyError, ValueError, OSError, XMLSyntaxError,
            OpcError, PythonDocxError) as exc:  # zlib, EOFError: a corrupt or cut deflate stream
        raise LoadError(str(path), f"not a valid DOCX file: {one_line(exc, 300, typed=False)}") from None
    _require_text(path, text)
    return _base(path, CONTENT_TYPES[".docx"], title, text, out.headings)


def iter_jsonl(path: Path, max_line_bytes: int) -> Iterator[Document | LoadError]:
    """One document per line {"id" (or "_id"), "text", "title"?, ...metadata}; bad lines as errors."""
    source = str(path.resolve())
    modified = _mtime(path)
    seen: dict[str, int] = {}  # id -> line of its first record
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            where = f"{path}:{lineno}"
            if not raw.strip():
                continue
            if len(raw) > max_line_bytes:
                yield LoadError(where, f"line is {len(raw)} bytes, over the limit of {max_line_bytes}")
                continue
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                yield LoadError(where, f"not valid UTF-8 (byte 0x{raw[exc.start]:02x})")
                continue
            try:
                obj: Any = json.loads(line)
            except json.JSONDecodeError as exc:
                yield LoadError(where, f"not valid JSON: {exc.msg} (column {exc.colno})")
                continue
            if not isinstance(obj, dict):
                yield LoadError(where, "not a JSON object")
                continue
            doc_id = obj.get("id", obj.get("_id"))
            if isinstance(doc_id, int | float) and not isinstance(doc_id, bool):
                doc_id = str(doc_id)
            if not isinstance(doc_id, str) or not doc_id.strip():
                yield LoadError(where, 'no "id" (or "_id") string')
                continue
            if doc_id in seen:
                yield LoadError(where, f"duplicate id {doc_id[:100]!r} (first on line {seen[doc_id]}); "
                                       "this line is skipped")
                continue
            seen[doc_id] = lineno
            text = obj.get("text")
            if not isinstance(text, str):
                yield LoadError(where, 'no "text" string')
                continue
            if not text.strip():
                yield LoadError(where, "empty text")
                continue
            title = obj.get("title")
            meta = {k: v for k, v in obj.items() if k not in _RESERVED_JSONL_KEYS}
            yield Document(
                doc_id=doc_id, source=source, title=str(title) if title is not None else "",
                content_type="application/jsonl", text=text, modified=modified, metadata=meta,
            )


LOADERS = {
    ".txt": load_text, ".text": load_text, ".md": load_markdown, ".markdown": load_markdown,
    ".html": load_html, ".htm": load_html, ".pdf": load_pdf, ".docx": load_docx,
}


def load_file(
    path: Path, max_file_bytes: int, limits: Limits = DEFAULT_LIMITS
) -> Iterator[Document | LoadError]:
    """The documents of one file, or LoadError items for what cannot be read."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".jsonl":
            yield from iter_jsonl(path, max_file_bytes)
            return
        loader = LOADERS.get(suffix)
        if loader is None:
            raise LoadError(str(path), f"unsupported file type {suffix or '(no extension)'}")
        check_size(path, max_file_bytes)
        doc = loader(path, limits)
        check_text(path, len(doc.text), limits)
        yield doc
    except LoadError as exc:
        yield exc
    except OSError as exc:
        yield LoadError(str(path), f"cannot read: {exc.strerror or one_line(exc, 300, typed=False)}")
    except MemoryError:  # the sandbox reports its memory budget
        raise
    except Exception as exc:  # a parser failing on hostile input (zlib, XML, ...) fails this file only
        yield LoadError(str(path), f"cannot parse {suffix.lstrip('.') or 'file'}: "
                                   f"{one_line(exc, 300)}"[:400])

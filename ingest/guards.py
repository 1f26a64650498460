"""Per-format guards against hostile documents: zip bombs, PDF bombs, deeply nested HTML.

Each guard raises LoadError with a one-line reason that names the setting to raise.
The sandbox (ingest/sandbox.py) bounds parse time and memory for every format; these
checks refuse the obvious bombs before any parser inflates them.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ingest.documents import LoadError


@dataclass(frozen=True)
class Limits:
    """Budgets for one document (see the ESRAG_* settings of the same names)."""

    max_docx_uncompressed_bytes: int = 256 * 1024 * 1024
    max_zip_ratio: int = 200
    max_zip_members: int = 10_000
    max_pdf_pages: int = 5_000
    max_pdf_stream_bytes: int = 64 * 1024 * 1024
    max_html_depth: int = 200
    max_text_chars: int = 50 * 1024 * 1024

    @classmethod
    def from_settings(cls, settings: Any) -> Limits:
        """The limits of ``settings`` (an esrag Settings)."""
        return cls(**{name: getattr(settings, name) for name in cls.__dataclass_fields__})


DEFAULT_LIMITS = Limits()
_RATIO_MIN_BYTES = 1024 * 1024  # small members may compress very well without being bombs


def check_zip(path: Path, limits: Limits) -> None:
    """Refuse a .docx whose members would inflate beyond the budget, before unzipping any."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except zipfile.BadZipFile as exc:
        raise LoadError(str(path), f"not a valid DOCX file: {exc}") from None
    if len(infos) > limits.max_zip_members:
        raise LoadError(str(path), f"zip holds {len(infos)} members, over the limit of "
                                   f"{limits.max_zip_members} (ESRAG_MAX_ZIP_MEMBERS)")
    total = sum(i.file_size for i in infos)
    if total > limits.max_docx_uncompressed_bytes:
        raise LoadError(str(path), f"zip would inflate to {total} bytes, over the limit of "
                                   f"{limits.max_docx_uncompressed_bytes} "
                                   "(ESRAG_MAX_DOCX_UNCOMPRESSED_BYTES)")
    for info in infos:
        ratio_limit = limits.max_zip_ratio * max(1, info.compress_size)
        if info.file_size > _RATIO_MIN_BYTES and info.file_size > ratio_limit:
            raise LoadError(str(path), f"zip member {info.filename!r} has a compression ratio over "
                                       f"{limits.max_zip_ratio} (a zip bomb? ESRAG_MAX_ZIP_RATIO)")


def check_pdf_pages(path: Path, pages: int, limits: Limits) -> None:
    """Refuse a PDF with more pages than the budget."""
    if pages > limits.max_pdf_pages:
        raise LoadError(str(path), f"PDF has {pages} pages, over the limit of {limits.max_pdf_pages} "
                                   "(ESRAG_MAX_PDF_PAGES)")


def check_text(path: Path, chars: int, limits: Limits) -> None:
    """Refuse extracted text longer than the budget."""
    if chars > limits.max_text_chars:
        raise LoadError(str(path), f"extracted text is over {limits.max_text_chars} characters "
                                   "(ESRAG_MAX_TEXT_CHARS)")


def tree_depth(root: Any) -> int:
    """The deepest nesting of an lxml element tree (iterative: no recursion limit)."""
    deepest = 0
    stack = [(root, 1)]
    while stack:
        el, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in el)
    return deepest


def check_html_depth(path: Path, root: Any, limits: Limits) -> None:
    """Refuse HTML nested deeper than the budget (libxml2 silently cuts trees at 256 levels)."""
    depth = tree_depth(root)
    if depth > limits.max_html_depth:
        raise LoadError(str(path), f"HTML is nested over {limits.max_html_depth} levels deep "
                                   "(ESRAG_MAX_HTML_DEPTH)")

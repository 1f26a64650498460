"""A document's text rebuilt from its chunks, each stored at its character offsets."""

from __future__ import annotations

from typing import Any

from query.hits import Hit


def document_view(chunks: list[Hit]) -> dict[str, Any]:
    """The document's text and its chunks' offsets.

    Chunks may overlap; each one is written at ``start``, so the text between offsets is the
    document's own. A gap no chunk covers (whitespace the chunker dropped) is filled with spaces.
    """
    length = max((c.end for c in chunks), default=0)
    buf = [" "] * length
    for c in chunks:
        span = c.text[: max(0, c.end - c.start)]
        buf[c.start:c.start + len(span)] = list(span)
    return {"text": "".join(buf)[:length],
            "chunks": [{"chunk_id": c.chunk_id, "start": c.start, "end": c.end} for c in chunks]}

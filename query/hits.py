"""What retrieval returns: a retrieved chunk (:class:`Hit`) and a ranked list with its timings
(:class:`Retrieval`).

Plain data with no imports of its own, so the stages that consume hits (rerank, context
packing, citations, generation, the API schemas) import these types without importing
retrieval, and retrieval imports rerank without a cycle.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Hit:
    """One retrieved chunk."""

    chunk_id: str
    doc_id: str
    source: str
    title: str
    text: str
    score: float
    start: int
    end: int
    chunk_no: int
    headings: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@dataclass
class Retrieval:
    """Hits and where the time went."""

    hits: list[Hit]
    timings_ms: dict[str, float]
    index: str
    # with rerank: where the passage vectors came from ("stored", "encoded", "mixed")
    rerank_source: str | None = None

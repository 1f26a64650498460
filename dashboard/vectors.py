"""Estimated off-heap memory of an index's vectors, by quantization.

Per vector of ``d`` dimensions: float (``hnsw``, ``flat``) 4*d bytes; int8 d+4; int4
d/2+4; bbq d/8+14; plus, for HNSW kinds, the graph at about m*2*4 bytes (m=16 unless the
mapping says otherwise). These are what must sit in the page cache for fast kNN; the raw
float vectors of quantized kinds stay on disk and are only read for rescoring.
"""

from __future__ import annotations

from typing import Any


def bytes_per_vector(kind: str, dims: int) -> float:
    """Bytes of one quantized vector of ``dims`` dimensions for index_options ``kind``."""
    if kind.startswith("int8"):
        return dims + 4.0
    if kind.startswith("int4"):
        return dims / 2 + 4.0
    if kind.startswith("bbq"):
        return dims / 8 + 14.0
    return 4.0 * dims


def graph_bytes_per_vector(kind: str, m: int = 16) -> float:
    """Bytes of HNSW graph links per vector (0 for flat kinds)."""
    return m * 2 * 4.0 if kind.endswith("hnsw") else 0.0


def estimate(kind: str, dims: int, count: int, m: int = 16) -> dict[str, Any]:
    """Estimated vector, graph and total bytes for ``count`` vectors."""
    vectors = bytes_per_vector(kind, dims) * count
    graph = graph_bytes_per_vector(kind, m) * count
    return {"kind": kind, "dims": dims, "m": m if kind.endswith("hnsw") else None,
            "vector_bytes": int(vectors), "graph_bytes": int(graph), "total_bytes": int(vectors + graph)}

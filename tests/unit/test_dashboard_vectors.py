"""The off-heap vector memory formulas of the dashboard."""

from __future__ import annotations

import pytest

from dashboard.vectors import bytes_per_vector, estimate, graph_bytes_per_vector


@pytest.mark.parametrize(("kind", "expected"), [
    ("hnsw", 1536.0), ("flat", 1536.0), ("int8_hnsw", 388.0), ("int8_flat", 388.0),
    ("int4_hnsw", 196.0), ("bbq_hnsw", 62.0), ("bbq_flat", 62.0),
])
def test_bytes_per_vector_384d(kind, expected):
    assert bytes_per_vector(kind, 384) == expected


def test_graph_only_for_hnsw():
    assert graph_bytes_per_vector("int8_hnsw") == 128.0
    assert graph_bytes_per_vector("hnsw", m=32) == 256.0
    assert graph_bytes_per_vector("int8_flat") == 0.0


def test_estimate_million_int8_vectors():
    assert estimate("int8_hnsw", 384, 1_000_000) == {
        "kind": "int8_hnsw", "dims": 384, "m": 16,
        "vector_bytes": 388_000_000, "graph_bytes": 128_000_000, "total_bytes": 516_000_000,
    }
    assert estimate("bbq_flat", 768, 10)["total_bytes"] == (96 + 14) * 10

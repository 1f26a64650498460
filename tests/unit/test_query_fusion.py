import pytest

from query.fusion import dbsf, dbsf_normalize, min_max, rrf, weighted


def test_rrf_exact_scores_and_order():
    fused = rrf([["a", "b", "c"], ["b", "d"]], k=60)
    assert [d for d, _ in fused] == ["b", "a", "d", "c"]
    scores = dict(fused)
    assert scores["b"] == 1 / 62 + 1 / 61
    assert scores["a"] == 1 / 61
    assert scores["d"] == 1 / 62
    assert scores["c"] == 1 / 63


def test_rrf_ties_keep_first_seen_order():
    assert rrf([["x"], ["y"]], k=1) == [("x", 0.5), ("y", 0.5)]


def test_min_max_and_constant_list():
    assert min_max([("a", 10.0), ("b", 5.0), ("c", 0.0)]) == {"a": 1.0, "b": 0.5, "c": 0.0}
    assert min_max([("a", 3.0), ("b", 3.0)]) == {"a": 1.0, "b": 1.0}
    assert min_max([]) == {}


def test_weighted_exact_values():
    sparse = [("a", 10.0), ("b", 6.0), ("c", 2.0)]
    dense = [("c", 0.9), ("d", 0.7), ("a", 0.5)]
    fused = dict(weighted(sparse, dense, weight_dense=0.25))
    assert fused["a"] == 0.75 * 1.0 + 0.25 * 0.0
    assert fused["b"] == 0.75 * 0.5
    assert fused["c"] == 0.75 * 0.0 + 0.25 * 1.0
    assert abs(fused["d"] - 0.25 * 0.5) < 1e-12
    assert [d for d, _ in weighted(sparse, dense, weight_dense=0.25)] == ["a", "b", "c", "d"]


def test_weighted_rrf():
    fused = dict(rrf([["a", "b"], ["b", "c"]], k=10, weights=[0.2, 1.8]))
    assert fused["a"] == pytest.approx(0.2 / 11)
    assert fused["b"] == pytest.approx(0.2 / 12 + 1.8 / 11)
    assert fused["c"] == pytest.approx(1.8 / 12)
    assert [d for d, _ in rrf([["a", "b"], ["b", "c"]], k=10, weights=[0.2, 1.8])] == ["b", "c", "a"]


def test_dbsf_normalize_uses_the_head_statistics():
    # head (2.0, 4.0): mean 3, sd 1 -> low 0, range 6; the tail is scaled the same way
    norm = dbsf_normalize([("a", 4.0), ("b", 2.0), ("c", -1.0)], window=2)
    assert norm == pytest.approx({"a": 4 / 6, "b": 2 / 6, "c": -1 / 6})
    # the whole list: mean 5/3, sd sqrt(38/9)
    full = dbsf_normalize([("a", 4.0), ("b", 2.0), ("c", -1.0)])
    sd = (38 / 9) ** 0.5
    assert full["a"] == pytest.approx((4 - (5 / 3 - 3 * sd)) / (6 * sd))
    assert dbsf_normalize([("a", 3.0), ("b", 3.0), ("c", 1.0)], window=2) == {"a": 1.0, "b": 1.0, "c": 1.0}
    assert dbsf_normalize([]) == {}


def test_dbsf_exact_values_and_order():
    sparse = [("a", 4.0), ("b", 2.0)]              # mean 3, sd 1: a 4/6, b 2/6
    dense = [("b", 0.9), ("c", 0.7), ("a", 0.5)]   # mean 0.7, sd sqrt(0.08/3)
    sd = (0.08 / 3) ** 0.5
    nd = {d: (s - (0.7 - 3 * sd)) / (6 * sd) for d, s in dense}
    fused = dbsf(sparse, dense, weight_dense=0.8)
    assert dict(fused) == pytest.approx({
        "a": 0.2 * 4 / 6 + 0.8 * nd["a"], "b": 0.2 * 2 / 6 + 0.8 * nd["b"], "c": 0.8 * nd["c"]})
    assert [d for d, _ in fused] == ["b", "c", "a"]
    # all weight on the sparse list: its order, ids only in the dense list last
    assert [d for d, _ in dbsf(sparse, dense, weight_dense=0.0)] == ["a", "b", "c"]

"""The kNN leg's search body: num_candidates, rescore_vector oversampling, filters; its settings."""

from __future__ import annotations

import pytest

from esrag.errors import ConfigError
from esrag.settings import load_settings
from query.retrieval import SOURCE_FIELDS, knn_body


def test_body_without_oversample_has_no_rescore() -> None:
    assert knn_body([0.5, 0.25], 10, 100, None) == {
        "size": 10, "_source": SOURCE_FIELDS, "track_total_hits": False,
        "knn": {"field": "embedding", "query_vector": [0.5, 0.25], "k": 10, "num_candidates": 100},
    }
    assert "rescore_vector" not in knn_body([0.5], 10, 100, None, 0.0)["knn"]


def test_body_with_oversample_asks_for_rescore_vector() -> None:
    body = knn_body([0.5, 0.25], 50, 200, {"doc_id": "a"}, 2.5)
    assert body["knn"] == {
        "field": "embedding", "query_vector": [0.5, 0.25], "k": 50, "num_candidates": 200,
        "rescore_vector": {"oversample": 2.5},
        "filter": {"bool": {"filter": [{"term": {"doc_id": "a"}}]}},
    }


def test_num_candidates_is_at_least_k_and_at_most_10000() -> None:
    assert knn_body([1.0], 300, 100, None)["knn"]["num_candidates"] == 300
    assert knn_body([1.0], 10, 10000, None)["knn"]["num_candidates"] == 10000


@pytest.mark.parametrize("value", ["0.5", "10.5", "-1", "x"])
def test_bad_oversample_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("ESRAG_KNN_OVERSAMPLE", value)
    with pytest.raises(ConfigError) as err:
        load_settings()
    message = str(err.value)
    assert message.startswith("invalid setting ESRAG_KNN_OVERSAMPLE: ") and "\n" not in message
    if value == "0.5":
        assert message == ("invalid setting ESRAG_KNN_OVERSAMPLE: Value error, must be 0 (off) "
                           "or between 1 and 10")


@pytest.mark.parametrize("value", ["0", "1", "3", "10"])
def test_oversample_zero_or_one_to_ten_is_accepted(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("ESRAG_KNN_OVERSAMPLE", value)
    assert load_settings().knn_oversample == float(value)


def test_eval_can_sweep_oversample() -> None:
    from query.eval.runner import parse_sweep, with_settings

    key, values = parse_sweep("knn_oversample=0,3")
    assert (key, values) == ("knn_oversample", ["0", "3"])
    assert with_settings(load_settings(), knn_oversample="3").knn_oversample == 3.0
    message = r"^invalid setting ESRAG_KNN_OVERSAMPLE: Value error, must be 0 \(off\) or between 1 and 10$"
    with pytest.raises(ConfigError, match=message):
        with_settings(load_settings(), knn_oversample="0.5")


def test_defaults_are_the_ones_chosen_from_the_curve(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ESRAG_NUM_CANDIDATES", raising=False)
    monkeypatch.delenv("ESRAG_KNN_OVERSAMPLE", raising=False)
    s = load_settings()
    assert (s.num_candidates, s.knn_oversample) == (200, 3.0)  # docs/SCALE.md, "Dense recall"

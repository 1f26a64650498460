"""A 5-second version of bench/load.py: concurrent mixed-mode searches, zero errors.

Timings are not asserted (the machine is shared); the full 60 s run is `python -m bench.load`.
"""

from __future__ import annotations

import pytest
from query_corpus import corpus_alias
from test_api_hostile import API_KEY, Served

from bench.load import MODES, run_load

pytestmark = pytest.mark.timeout(180)


def test_five_seconds_of_concurrent_searches_without_errors(es):
    with corpus_alias(es) as settings:
        served = Served(settings.model_copy(update={"api_keys": [API_KEY]}))
        try:
            result = run_load(served.url, API_KEY, seconds=5, clients=4)
        finally:
            served.close()
    assert result["requests"] > 0
    assert result["errors"] == 0 and result["statuses"] == {"200": result["requests"]}
    assert all(result[f"latency_{mode}"]["n"] > 0 for mode in MODES)

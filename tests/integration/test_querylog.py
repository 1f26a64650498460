"""esrag.querylog against the real Redis (database 15, only its own key)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import pytest
import redis

from esrag import querylog


@pytest.fixture()
def client() -> Iterator[redis.Redis]:
    r = redis.Redis.from_url("redis://127.0.0.1:6379/15")
    r.delete(querylog.KEY)
    yield r
    r.delete(querylog.KEY)
    r.close()


@pytest.mark.timeout(30)
def test_summary_per_mode(client: redis.Redis):
    bm25 = [float(v) for v in range(1, 21)]
    for ms in bm25:
        querylog.record(client, mode="bm25", ms=ms, ok=True)
    querylog.record(client, mode="bm25", ms=999.0, ok=False)
    for ms in (10.0, 30.0):
        querylog.record(client, mode="hybrid", ms=ms, ok=True)
    # an entry older than the window is ignored
    client.lpush(querylog.KEY, f"{time.time() - 1000:.3f} dense 5.00 1")

    s = querylog.summary(client, window_s=300)
    assert s["window_s"] == 300
    assert sorted(s["modes"]) == ["bm25", "hybrid"]
    b = s["modes"]["bm25"]
    assert b["count"] == 21
    assert b["errors"] == 1
    assert b["error_rate"] == round(1 / 21, 4)
    assert b["rate_per_s"] == round(21 / 300, 4)
    assert b["p50_ms"] == round(float(np.percentile(bm25, 50)), 2) == 10.5
    assert b["p95_ms"] == round(float(np.percentile(bm25, 95)), 2) == 19.05
    h = s["modes"]["hybrid"]
    assert (h["count"], h["errors"], h["p50_ms"], h["p95_ms"]) == (2, 0, 20.0, 29.0)
    assert s["all"]["count"] == 23
    assert s["all"]["errors"] == 1


@pytest.mark.timeout(30)
def test_log_is_capped(client: redis.Redis):
    client.rpush(querylog.KEY, *[f"{time.time():.3f} bm25 1.00 1"] * querylog.MAX_ENTRIES)
    querylog.record(client, mode="dense", ms=7.0, ok=True)
    assert client.llen(querylog.KEY) == querylog.MAX_ENTRIES
    assert client.lindex(querylog.KEY, -1).decode().split()[1:] == ["dense", "7.00", "1"]


@pytest.mark.timeout(30)
def test_only_errors_and_empty(client: redis.Redis):
    assert querylog.summary(client, window_s=60) == {
        "window_s": 60, "modes": {},
        "all": {"count": 0, "rate_per_s": 0.0, "p50_ms": None, "p95_ms": None,
                "errors": 0, "error_rate": 0.0},
    }
    querylog.record(client, mode="ask", ms=3.0, ok=False)
    a = querylog.summary(client, window_s=60)["modes"]["ask"]
    assert (a["count"], a["p50_ms"], a["p95_ms"], a["error_rate"]) == (1, None, None, 1.0)


@pytest.mark.timeout(30)
def test_record_never_raises_when_redis_is_down():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    down = redis.Redis.from_url(f"redis://127.0.0.1:{port}/0", socket_connect_timeout=1)
    querylog.record(down, mode="bm25", ms=1.0, ok=True)

"""A capped log of query latencies in Redis, and its summary for the dashboard.

Each entry of the list ``esrag:querylog`` is ``"<unix ts> <mode> <ms> <ok 1|0>"``; the
list keeps the newest ``MAX_ENTRIES`` entries. Recording never raises: a query must not
fail because its latency could not be logged.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import redis

KEY = "esrag:querylog"
MAX_ENTRIES = 10_000


def record(client: redis.Redis, *, mode: str, ms: float, ok: bool) -> None:
    """Append one query (its mode, latency in ms and success) to the capped log."""
    entry = f"{time.time():.3f} {mode.replace(' ', '_') or '-'} {float(ms):.2f} {1 if ok else 0}"
    try:
        pipe = client.pipeline(transaction=False)
        pipe.rpush(KEY, entry)
        pipe.ltrim(KEY, -MAX_ENTRIES, -1)
        pipe.execute()
    except (redis.RedisError, OSError):
        pass


def _parse(raw: bytes | str) -> tuple[float, str, float, bool] | None:
    text = raw.decode() if isinstance(raw, bytes) else raw
    parts = text.split()
    if len(parts) != 4:
        return None
    try:
        return float(parts[0]), parts[1], float(parts[2]), parts[3] == "1"
    except ValueError:
        return None


def _stats(rows: list[tuple[float, str, float, bool]], window_s: float) -> dict[str, Any]:
    ok_ms = np.array([ms for _, _, ms, ok in rows if ok], dtype=float)
    errors = sum(1 for _, _, _, ok in rows if not ok)
    return {
        "count": len(rows),
        "rate_per_s": round(len(rows) / window_s, 4),
        "p50_ms": round(float(np.percentile(ok_ms, 50)), 2) if ok_ms.size else None,
        "p95_ms": round(float(np.percentile(ok_ms, 95)), 2) if ok_ms.size else None,
        "errors": errors,
        "error_rate": round(errors / len(rows), 4) if rows else 0.0,
    }


def summary(client: redis.Redis, window_s: float = 300) -> dict[str, Any]:
    """Per-mode count, rate/s, p50/p95 latency (of successful queries) and error rate
    over the last ``window_s`` seconds, plus the same over all modes under ``"all"``."""
    since = time.time() - window_s
    rows = [row for row in map(_parse, client.lrange(KEY, 0, -1)) if row is not None and row[0] >= since]
    modes = sorted({mode for _, mode, _, _ in rows})
    return {
        "window_s": window_s,
        "modes": {m: _stats([r for r in rows if r[1] == m], window_s) for m in modes},
        "all": _stats(rows, window_s),
    }

"""The feed of the dashboard's Queries panel: every search and ask the API answers is appended
to the capped query log in Redis (esrag/querylog.py), which dashboard/state.py summarises.

The server hands :func:`query_recorder` to the query app as an observer; it runs after the
response, in a worker thread, and a Redis that is down costs at most its half-second timeouts.
"""

from __future__ import annotations

import redis

from esrag import querylog
from esrag.settings import Settings
from query.api.app import QueryObserver


def query_recorder(settings: Settings) -> QueryObserver:
    """Record (mode, latency in ms, success) of one query in ``settings.redis_url``'s query log."""
    log = redis.Redis.from_url(settings.redis_url, socket_timeout=0.5, socket_connect_timeout=0.5)

    def record(mode: str, ms: float, ok: bool) -> None:
        querylog.record(log, mode=mode, ms=ms, ok=ok)

    return record

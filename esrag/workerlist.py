"""The workers that announced themselves in Redis: what `esrag status` lists, without Celery.

Each worker's main process announces itself every third of ESRAG_TASK_LEASE_SECONDS
(workers/presence.py) and withdraws when it shuts down. Layout:

- ``esrag:workers``        sorted set: worker name -> expiry of its announcement (Redis time)
- ``esrag:workers:info``   hash: worker name -> JSON {"pid", "concurrency", "queues"}

A worker counts as online until its announcement expires, so one killed outright is
listed for at most ESRAG_TASK_LEASE_SECONDS more. Asking the workers themselves (Celery's
broadcast, esrag/workerprobe.py) takes Celery's import (about 0.5 s of CPU) and a 1 s wait
for replies: the dashboard and ingest's routing do that; `esrag status` reads this list.
Times are Redis's ``TIME``, so worker clocks do not matter.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import redis

KEY = "esrag:workers"
INFO = "esrag:workers:info"

_NOW = "local t = redis.call('TIME') local now = tonumber(t[1]) + tonumber(t[2]) / 1000000\n"
_PRUNE = """
for _, name in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)) do
  redis.call('HDEL', KEYS[2], name)
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
"""
# KEYS: set, info   ARGV: name, ttl seconds, info JSON
_ANNOUNCE = _NOW + _PRUNE + """
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
return 1
"""
# KEYS: set, info   -> {name, info JSON, ...} of the unexpired announcements
_ONLINE = _NOW + """
local out = {}
for _, name in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')) do
  local info = redis.call('HGET', KEYS[2], name)
  if info then out[#out + 1] = name; out[#out + 1] = info end
end
return out
"""


def announce(client: redis.Redis, name: str, info: dict[str, Any], ttl: float) -> None:
    """Record worker ``name`` as online for ``ttl`` seconds (and drop expired announcements)."""
    client.eval(_ANNOUNCE, 2, KEY, INFO, name, ttl, json.dumps(info))


def withdraw(client: redis.Redis, name: str) -> None:
    """Remove worker ``name`` from the list (at its shutdown)."""
    pipe = client.pipeline()
    pipe.zrem(KEY, name)
    pipe.hdel(INFO, name)
    pipe.execute()


def online(client: redis.Redis) -> list[dict[str, Any]]:
    """The workers whose announcement has not expired, by name: name, pid, concurrency, queues."""
    flat = client.eval(_ONLINE, 2, KEY, INFO)
    rows = []
    for raw_name, raw_info in zip(flat[::2], flat[1::2], strict=True):
        name = raw_name.decode() if isinstance(raw_name, bytes) else raw_name
        rows.append({"name": name, **json.loads(raw_info)})
    return sorted(rows, key=lambda r: r["name"])

"""The list of workers `esrag status` reads (esrag/workerlist.py) on a Redis of its own:
announcements expire after their time to live, by Redis's clock, and a withdrawal is at once."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import pytest
import redis
from dashboard_server import free_port

from esrag import workerlist


@pytest.fixture()
def client(tmp_path) -> Iterator[redis.Redis]:
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    r = redis.Redis(port=port, socket_timeout=5)
    deadline = time.monotonic() + 20
    while True:
        try:
            r.ping()
            break
        except redis.ConnectionError:
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.1)
    yield r
    r.close()
    proc.terminate()
    proc.wait(timeout=10)


@pytest.mark.timeout(60)
def test_announce_expire_withdraw(client: redis.Redis) -> None:
    assert workerlist.online(client) == []
    workerlist.announce(client, "w-short@h", {"pid": 11, "concurrency": 2, "queues": ["ingest"]}, 1.0)
    workerlist.announce(client, "w-long@h", {"pid": 12, "concurrency": 1, "queues": ["a", "b"]}, 60.0)
    assert workerlist.online(client) == [
        {"name": "w-long@h", "pid": 12, "concurrency": 1, "queues": ["a", "b"]},
        {"name": "w-short@h", "pid": 11, "concurrency": 2, "queues": ["ingest"]},
    ]
    time.sleep(1.3)
    assert [w["name"] for w in workerlist.online(client)] == ["w-long@h"]
    # the next announcement prunes the expired one's record too
    workerlist.announce(client, "w-long@h", {"pid": 12, "concurrency": 1, "queues": ["a", "b"]}, 60.0)
    assert client.hkeys(workerlist.INFO) == [b"w-long@h"]
    assert client.zrange(workerlist.KEY, 0, -1) == [b"w-long@h"]
    workerlist.withdraw(client, "w-long@h")
    assert workerlist.online(client) == []
    assert client.exists(workerlist.KEY, workerlist.INFO) == 0

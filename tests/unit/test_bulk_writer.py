"""BulkWriter retry policy: a down or overloaded cluster is an error, not failed documents."""

from __future__ import annotations

import pytest
from elastic_transport import ApiResponseMeta, HttpHeaders, NodeConfig
from elasticsearch import ApiError, ConnectionError

from esrag.errors import ServiceUnavailable
from ingest.bulk import BulkWriter


class _Client:
    """Stands in for the ES client: fails the first ``fail`` bulk calls with ``error``."""

    def __init__(self, error: Exception, fail: int):
        self.error, self.fail, self.calls = error, fail, 0

    def options(self, **_: object) -> _Client:
        return self

    def bulk(self, operations: bytes) -> dict:
        self.calls += 1
        if self.calls <= self.fail:
            raise self.error
        n = operations.count(b'{"index"')
        return {"items": [{"index": {"status": 201}} for _ in range(n)]}


def _api_error(status: int) -> ApiError:
    meta = ApiResponseMeta(status=status, http_version="1.1", headers=HttpHeaders(), duration=0.0,
                           node=NodeConfig("http", "127.0.0.1", 9200))
    return ApiError(message="busy", meta=meta, body={"error": "busy"})


def _writer(client: _Client, sleeps: list[float]) -> BulkWriter:
    return BulkWriter(client, 1 << 20, max_retries=3, initial_backoff=0.5, max_backoff=4, sleep=sleeps.append)


def test_connection_errors_retry_then_succeed() -> None:
    sleeps: list[float] = []
    client = _Client(ConnectionError("refused"), fail=2)
    w = _writer(client, sleeps)
    w.add("index", "i", "a", {"text": "x"}, "a")
    outcomes = w.flush()
    assert [o.ok for o in outcomes] == [True]
    assert sleeps == [0.5, 1.0] and client.calls == 3


def test_cluster_down_raises_instead_of_failing_documents() -> None:
    sleeps: list[float] = []
    w = _writer(_Client(ConnectionError("refused"), fail=99), sleeps)
    w.add("index", "i", "a", {"text": "x"}, "a")
    with pytest.raises(ServiceUnavailable, match=r"^Elasticsearch unreachable \(ConnectionError\) after 4"):
        w.flush()
    assert sleeps == [0.5, 1.0, 2.0]


def test_persistent_429_raises() -> None:
    w = _writer(_Client(_api_error(429), fail=99), [])
    w.add("index", "i", "a", {"text": "x"}, "a")
    with pytest.raises(ServiceUnavailable, match=r"^Elasticsearch answered HTTP 429 to 4 bulk requests"):
        w.flush()


def test_client_error_fails_the_items_only() -> None:
    w = _writer(_Client(_api_error(400), fail=1), [])
    w.add("index", "i", "a", {"text": "x"}, "a")
    (outcome,) = w.flush()
    assert outcome.ok is False and outcome.status == 400

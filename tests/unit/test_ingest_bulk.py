"""BulkWriter: byte-sized requests, retries with backoff, per-item outcomes (fake client)."""

from __future__ import annotations

import json

import pytest
from elastic_transport import ApiResponseMeta, HttpHeaders, NodeConfig
from elasticsearch import ApiError
from elasticsearch import ConnectionError as ESConnectionError

from esrag.errors import ServiceUnavailable
from ingest.bulk import BulkWriter


class FakeClient:
    """Answers bulk requests from a script of responses (or exceptions)."""

    def __init__(self, script):
        self.script = list(script)
        self.bodies = []

    def options(self, **kwargs):
        return self

    def bulk(self, operations):
        lines = operations.decode().splitlines()
        actions = [json.loads(line) for line in lines if '"_index"' in line]
        self.bodies.append([next(iter(a.values()))["_id"] for a in actions])
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        return {"items": [{op: {"_id": a[op]["_id"], "status": step(a[op]["_id"])}}
                          for a in actions for op in a]}


def status(codes):
    return lambda doc_id: codes.get(doc_id, 201)


def api_error(code):
    meta = ApiResponseMeta(status=code, http_version="1.1", headers=HttpHeaders(), duration=0.0,
                           node=NodeConfig("http", "localhost", 9200))
    return ApiError("unavailable", meta=meta, body={"error": {"type": "unavailable", "reason": "busy"}})


def test_requests_are_sized_by_bytes():
    client = FakeClient([status({})] * 3)
    writer = BulkWriter(client, max_bytes=1500, max_retries=6, sleep=lambda s: None)
    outcomes = []
    for i in range(5):
        outcomes += writer.add("index", "idx", f"d{i}", {"text": "x" * 600}, i)
    outcomes += writer.flush()
    assert client.bodies == [["d0", "d1"], ["d2", "d3"], ["d4"]]
    assert [(o.key, o.ok, o.status) for o in outcomes] == [(i, True, 201) for i in range(5)]


def test_items_with_429_or_5xx_are_retried_with_backoff():
    sleeps = []
    client = FakeClient([status({"a": 429, "b": 503}), status({"b": 503}), status({})])
    writer = BulkWriter(client, max_bytes=10_000, max_retries=6, initial_backoff=0.5, sleep=sleeps.append)
    for k in "abc":
        writer.add("index", "idx", k, {"text": k}, k)
    outcomes = writer.flush()
    assert client.bodies == [["a", "b", "c"], ["a", "b"], ["b"]]
    assert sleeps == [0.5, 1.0]
    assert [(o.key, o.ok) for o in outcomes] == [("a", True), ("b", True), ("c", True)]


def test_connection_errors_and_5xx_requests_are_retried():
    client = FakeClient([ESConnectionError("refused"), api_error(503), status({})])
    writer = BulkWriter(client, max_bytes=10_000, max_retries=6, sleep=lambda s: None)
    writer.add("index", "idx", "a", {"text": "a"}, "a")
    assert [o.ok for o in writer.flush()] == [True]
    assert client.bodies == [["a"], ["a"], ["a"]]


def test_other_item_errors_are_final_with_a_one_line_reason():
    client = FakeClient([lambda doc_id: 400 if doc_id == "bad" else 201])
    writer = BulkWriter(client, max_bytes=10_000, max_retries=6, sleep=lambda s: None)
    writer.add("index", "idx", "bad", {"text": "x"}, "bad")
    writer.add("delete", "idx", "gone", None, "gone")
    bad, gone = writer.flush()
    assert (bad.ok, bad.status) == (False, 400)
    assert (gone.ok, gone.op) == (True, "delete")
    assert len(client.bodies) == 1


def test_cluster_down_raises_instead_of_failing_documents():
    sleeps = []
    client = FakeClient([ESConnectionError("refused")] * 4)
    writer = BulkWriter(client, max_bytes=10_000, max_retries=3, sleep=sleeps.append)
    writer.add("index", "idx", "a", {"text": "a"}, "a")
    with pytest.raises(ServiceUnavailable, match=r"^Elasticsearch unreachable \(ConnectionError\) after 4 "):
        writer.flush()
    assert sleeps == [0.5, 1.0, 2.0]


def test_persistent_429_raises():
    client = FakeClient([api_error(429)] * 4)
    writer = BulkWriter(client, max_bytes=10_000, max_retries=3, sleep=lambda s: None)
    writer.add("index", "idx", "a", {"text": "a"}, "a")
    with pytest.raises(ServiceUnavailable, match=r"^Elasticsearch answered HTTP 429 to 4 bulk requests"):
        writer.flush()

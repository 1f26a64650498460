"""Hostile requests against the real API served by uvicorn on loopback (real ES and Redis).

Schemathesis fuzzes every operation of the OpenAPI schema (no 5xx, responses match the
schema); every route but the health probes needs the key; oversize bodies get 413; absurd
k and filters 422; query text never becomes query DSL; secrets never leak; Redis down
refuses ingest with 503; the per-key rate limit answers 429 with Retry-After.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck
from hypothesis import settings as hsettings
from pydantic import SecretStr
from query_corpus import corpus_alias

from esrag.settings import Settings
from query.retrieval import bm25_body
from server.app import create_app

pytestmark = pytest.mark.timeout(300)

API_KEY = "api-SECRET-key-7f3a9c"
ES_PASSWORD = "es-SECRET-pass-41d2"
LLM_KEY = "llm-SECRET-key-90be"
SECRETS = (API_KEY, ES_PASSWORD, LLM_KEY)
KEY = {"X-API-Key": API_KEY}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """create_app(settings) under uvicorn in a thread, on a free loopback port."""

    def __init__(self, settings: Settings):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=self.port, log_config=None,
                                access_log=True, lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def log_records() -> Iterator[list[logging.LogRecord]]:
    """Every log record of the module's requests (all loggers, DEBUG and up), but those of
    the tests' own HTTP client (httpx, httpcore), which logs the URLs the tests send."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.name.split(".")[0] not in ("httpx", "httpcore"):
                records.append(record)

    root = logging.getLogger()
    handler, level = Keep(logging.DEBUG), root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield records
    root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture(scope="module")
def api(es, log_records, tmp_path_factory) -> Iterator[Served]:
    roots = tmp_path_factory.mktemp("roots")
    with corpus_alias(es) as base:
        settings = base.model_copy(update={
            "api_keys": [API_KEY], "es_username": "elastic", "es_password": SecretStr(ES_PASSWORD),
            "llm_api_key": SecretStr(LLM_KEY), "allowed_roots": [roots],
        })
        served = Served(settings)
        yield served
        served.close()


def test_every_route_but_health_needs_the_key(api: Served):
    spec = httpx.get(f"{api.url}/openapi.json", headers=KEY).json()
    open_routes, checked = [], 0
    for path, ops in spec["paths"].items():
        for method in ops:
            url = api.url + path.replace("{doc_id}", "x").replace("{job_id}", "x").replace("{", "").replace(
                "}", "")
            r = httpx.request(method, url, json={})
            if r.status_code != 401:
                open_routes.append(f"{method.upper()} {path}")
            checked += 1
    assert checked >= 8
    assert sorted(open_routes) == ["GET /healthz", "GET /readyz"]


def test_schema_and_swagger_ui_need_the_key(api: Served):
    assert [httpx.get(f"{api.url}{p}").status_code for p in ("/openapi.json", "/docs", "/redoc")] == [
        401, 401, 404]
    assert httpx.get(f"{api.url}/openapi.json", headers={"X-API-Key": "wrong"}).status_code == 401
    assert httpx.get(f"{api.url}/openapi.json", headers=KEY).json()["info"]["title"] == "esrag"
    docs = httpx.get(f"{api.url}/docs", headers=KEY)
    assert docs.status_code == 200 and "/openapi.json" in docs.text
    # the dashboard's cookie opens them too
    with httpx.Client(base_url=api.url, follow_redirects=True) as browser:
        assert browser.get("/dashboard", params={"key": API_KEY}).status_code == 200
        assert browser.get("/openapi.json").status_code == 200


def test_schemathesis_no_server_errors_no_schema_violations(api: Served):
    """Every operation of the schema, fuzzed with valid and invalid data (the pytest plugin of
    schemathesis does not load under pytest 9, so operations are driven one by one)."""
    from hypothesis import given
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

    schema = schemathesis.openapi.from_url(f"{api.url}/openapi.json", headers=KEY)
    checks = [not_a_server_error, response_schema_conformance, content_type_conformance]
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 8

    for operation in operations:
        @given(case=operation.as_strategy())
        @hsettings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def run(case):
            case.call_and_validate(headers=KEY, timeout=30, checks=checks)

        run()


def test_oversize_bodies_are_refused_with_413(api: Served):
    big = json.dumps({"query": "x" * (2 * 1024 * 1024)})
    r = httpx.post(f"{api.url}/v1/search", content=big, headers={**KEY, "content-type": "application/json"})
    assert r.status_code == 413
    assert r.json() == {"detail": f"request body over {1024 * 1024} bytes (ESRAG_MAX_BODY_BYTES)"}

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams
        yield b'{"query": "'
        for _ in range(40):
            yield b"y" * 65536
        yield b'"}'

    r = httpx.post(f"{api.url}/v1/search", content=chunks(),
                   headers={**KEY, "content-type": "application/json"})
    assert r.status_code == 413
    small = httpx.post(f"{api.url}/v1/search", content=iter([b'{"query": ', b'"bread", "k": 1}']),
                       headers={**KEY, "content-type": "application/json"})
    assert small.status_code == 200 and small.json()["hits"][0]["chunk_id"] == "bread#0"


@pytest.mark.parametrize("body", [
    {"query": "x", "k": 10**9}, {"query": "x", "k": -1}, {"query": "x", "k": 0}, {"query": "x" * 2001},
    {"query": "x", "filters": {f"meta.k{i}": "v" for i in range(1000)}},
    {"query": "x", "filters": {"meta.k": "v" * 5000}}, {"query": "x", "filters": {"script": "1"}},
    {"query": "x", "mode": "script"}, {"query": "x", "extra": {"script": {"source": "1"}}},
])
def test_absurd_k_and_filters_are_refused(api: Served, body):
    r = httpx.post(f"{api.url}/v1/search", json=body, headers=KEY)
    assert r.status_code == 422, r.text


# query -> whether any chunk matches it as plain words (as DSL or Lucene syntax each would match all 7)
HOSTILE_QUERIES = {'*:*': False, 'title:foo OR *:*': False, '{"query": {"match_all": {}}}': False,
                   '/.*/': False,
                   '{"script": {"source": "System.exit(0)"}}': None, 'doc_id:* AND _exists_:text': None}
DSL_KEYS = {"query_string", "simple_query_string", "script", "script_score", "regexp", "wildcard", "prefix"}


def _walk(node, path=()):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, (*path, key))
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value, path)
    else:
        yield path, node


@pytest.mark.parametrize("query", list(HOSTILE_QUERIES))
def test_query_text_is_plain_text_not_dsl(api: Served, query):
    body = bm25_body(query, query, 10, None)
    leaves = list(_walk(body))
    assert not {key for path, _ in leaves for key in path} & DSL_KEYS
    placed = [path for path, value in leaves if value == query]
    assert placed == [("query", "bool", "should", "multi_match", "query"),
                      ("query", "bool", "should", "match", "text_stemmed", "query")]
    r = httpx.post(f"{api.url}/v1/search", json={"query": query, "mode": "bm25", "k": 10}, headers=KEY)
    assert r.status_code == 200
    hits = r.json()["hits"]
    assert hits == [] if HOSTILE_QUERIES[query] is False else len(hits) < 7


def test_secrets_never_in_errors_metrics_or_logs(api: Served, log_records, capfd):
    responses = [
        httpx.post(f"{api.url}/v1/search", json={"query": "x"}, headers={"X-API-Key": "wrong"}),
        httpx.post(f"{api.url}/v1/search", json={"query": "x", "k": "nan"}, headers=KEY),
        httpx.post(f"{api.url}/v1/ask", json={"question": "bread?"}, headers=KEY),
        httpx.post(f"{api.url}/v1/ingest", json={"paths": ["../../etc/passwd"]}, headers=KEY),
        httpx.get(f"{api.url}/v1/documents/nope", headers=KEY),
        httpx.get(f"{api.url}/v1/jobs/nope", headers=KEY),
        httpx.get(f"{api.url}/readyz"),
        httpx.get(f"{api.url}/metrics", headers=KEY),
        httpx.get(f"{api.url}/openapi.json", headers=KEY),
    ]
    assert [r.status_code for r in responses] == [401, 422, 200, 400, 404, 404, 200, 200, 200]
    assert "esrag_http_requests" in responses[7].text
    text = "\n".join(r.text + json.dumps(dict(r.headers)) for r in responses)
    logs = "\n".join(rec.getMessage() + repr(rec.args) for rec in log_records)
    out, err = capfd.readouterr()
    assert log_records, "the logs were captured"
    import base64

    basic = base64.b64encode(f"elastic:{ES_PASSWORD}".encode()).decode()
    for secret in (*SECRETS, basic):
        assert secret not in text and secret not in logs and secret not in out + err


def test_secrets_not_in_unavailable_errors(settings: Settings):
    from fastapi.testclient import TestClient

    port = free_port()
    down = settings.model_copy(update={
        "es_url": f"http://elastic:{ES_PASSWORD}@127.0.0.1:{port}", "es_max_retries": 0,
        "redis_url": f"redis://:{ES_PASSWORD}@127.0.0.1:{free_port()}/0", "api_keys": [API_KEY],
    })
    with TestClient(create_app(down)) as c:
        r1 = c.post("/v1/search", json={"query": "x"}, headers=KEY)
        r2 = c.get("/readyz")
        r3 = c.get("/v1/jobs", headers=KEY)
    assert (r1.status_code, r2.status_code, r3.status_code) == (503, 503, 503)
    assert r1.json()["detail"].startswith(f"Elasticsearch at http://127.0.0.1:{port} is unavailable")
    for r in (r1, r2, r3):
        assert ES_PASSWORD not in r.text


def test_redis_down_ingest_is_503_and_no_job_is_created(settings: Settings, tmp_path: Path):
    from fastapi.testclient import TestClient

    from workers.jobstore import JobStore

    roots = tmp_path / "root"
    roots.mkdir()
    (roots / "a.txt").write_text("a document")
    port = free_port()
    down = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{port}/0", "allowed_roots": [roots]})
    with TestClient(create_app(down), base_url="http://localhost") as c:
        r = c.post("/v1/ingest", json={"paths": ["a.txt"]})
    assert r.status_code == 503
    assert r.json()["detail"] == (f"Redis at redis://127.0.0.1:{port}/0 is unavailable (ConnectionError); "
                                  "job not submitted")
    real = JobStore.from_url(settings.redis_url)
    assert [j for j in real.list(200) if j.index == settings.index] == []


def test_rate_limit_per_key_429_with_retry_after(settings: Settings):
    from fastapi.testclient import TestClient

    limited = settings.model_copy(update={"rate_limit_per_minute": 3, "api_keys": [API_KEY, "other-key"]})
    with TestClient(create_app(limited)) as c:
        codes = [c.get("/v1/jobs/none", headers=KEY).status_code for _ in range(4)]
        assert codes == [404, 404, 404, 429]
        r = c.get("/v1/jobs/none", headers=KEY)
        assert r.status_code == 429 and r.headers["retry-after"] == "20"
        assert r.json() == {"detail": "rate limit exceeded (ESRAG_RATE_LIMIT_PER_MINUTE); retry later"}
        assert c.get("/v1/jobs/none", headers={"X-API-Key": "other-key"}).status_code == 404
        assert c.get("/healthz").status_code == 200 and c.get("/healthz").status_code == 200
        # made-up keys share the client address's bucket: 3 tries, then 429 (not 401 forever)
        codes = [c.get("/v1/jobs/none", headers={"X-API-Key": f"made-up-{i}"}).status_code for i in range(4)]
        assert codes == [401, 401, 401, 429]

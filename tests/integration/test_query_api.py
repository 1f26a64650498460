"""The HTTP API against the real Elasticsearch and Redis: auth, validation, SSE, 503 and recovery."""

from __future__ import annotations

import json
import socket
import threading

import pytest
from fastapi.testclient import TestClient
from query_corpus import corpus_alias

from esrag.errors import ConfigError
from esrag.settings import load_settings
from query.api.security import check_bind
from server.app import create_app

KEY = {"X-API-Key": "secret-1"}


@pytest.fixture(scope="module")
def client(es):
    with corpus_alias(es) as settings:
        settings = settings.model_copy(update={"api_keys": ["secret-1", "secret-2"]})
        with TestClient(create_app(settings)) as c:
            yield c


def test_auth_required_except_health(client):
    body = {"query": "read a file"}
    assert client.post("/v1/search", json=body).status_code == 401
    assert client.post("/v1/search", json=body, headers={"X-API-Key": "wrong"}).json() == {
        "detail": "invalid API key"}
    assert client.post("/v1/search", json=body, headers=KEY).status_code == 200
    assert client.post("/v1/search", json=body,
                       headers={"Authorization": "Bearer secret-2"}).status_code == 200
    assert client.get("/metrics").status_code == 401
    assert client.get("/v1/documents/bread").status_code == 401
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"ready": True, "checks": {"elasticsearch": "green",
                                                                     "redis": "ok"}}


@pytest.mark.parametrize("body", [
    {"query": ""},
    {"query": "x" * 2001},
    {"query": "x", "k": 0},
    {"query": "x", "k": 101},
    {"query": "x", "mode": "sparse"},
    {"query": "x", "filters": {"text": "y"}},
    {"query": "x", "filters": {f"meta.k{i}": "v" for i in range(17)}},
    {"query": "x", "filters": {"doc_id": "v" * 1025}},
    {"query": "x", "query_dsl": {"match_all": {}}},
    {"query": {"match_all": {}}},
])
def test_validation_422(client, body):
    assert client.post("/v1/search", json=body, headers=KEY).status_code == 422


def test_k_is_held_to_search_request_max_and_the_engine_bound(es):
    """One k limit per layer: POST /v1/search at most ESRAG_SEARCH_REQUEST_MAX (100), raised up
    to the engine's MAX_K (1000, what evaluation needs: 300 chunks a query) and no further."""
    with corpus_alias(es) as settings:
        keyed = settings.model_copy(update={"api_keys": ["secret-1"]})
        with TestClient(create_app(keyed)) as c:
            r = c.post("/v1/search", headers=KEY, json={"query": "bread", "mode": "bm25", "k": 101})
            assert r.status_code == 422
            assert r.json()["detail"][0]["msg"] == "k is at most 100 (ESRAG_SEARCH_REQUEST_MAX)"
        wide = keyed.model_copy(update={"search_request_max": 1000})
        with TestClient(create_app(wide)) as c:
            r = c.post("/v1/search", headers=KEY, json={"query": "bread", "mode": "bm25", "k": 1000})
            assert r.status_code == 200 and r.json()["hits"][0]["chunk_id"] == "bread#0"
            assert c.post("/v1/search", headers=KEY, json={"query": "bread", "k": 1001}).status_code == 422
    with pytest.raises(ConfigError, match="ESRAG_SEARCH_REQUEST_MAX"):
        load_settings(search_request_max=1001)


def test_search_and_filters(client):
    r = client.post("/v1/search", headers=KEY, json={"query": "read a file line by line", "mode": "bm25",
                                                     "k": 50, "filters": {"meta.team": "python"}})
    assert r.status_code == 200
    assert [h["chunk_id"] for h in r.json()["hits"]] == ["python-files#0", "python-files#1"]
    assert r.json()["mode"] == "bm25"


def test_documents(client):
    r = client.get("/v1/documents/secret-notes", headers=KEY)
    assert [(c["chunk_id"], c["start"], c["end"]) for c in r.json()["chunks"]] == [
        ("secret-notes#0", 0, 84), ("secret-notes#1", 86, 145)]
    assert client.get("/v1/documents/nope", headers=KEY).status_code == 404


def test_ask_json_and_sse(client):
    q = {"question": "What temperature should bread be baked at?", "k": 3}
    r = client.post("/v1/ask", headers=KEY, json=q)
    data = r.json()
    assert data["answer"] == "Bake the bread at 220 degrees for thirty minutes until the crust is golden. [1]"
    assert data["citations"][0]["chunk_id"] == "bread#0" and data["backend"] == "extractive"
    with client.stream("POST", "/v1/ask", headers={**KEY, "Accept": "text/event-stream"}, json=q) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [line for line in r.iter_lines() if line.startswith(("event:", "data:"))]
    assert events[0] == "event: token" and events[-2] == "event: done"
    assert json.loads(events[-1][5:])["answer"] == data["answer"]


def test_metrics_per_route_and_mode(client):
    client.post("/v1/search", headers=KEY, json={"query": "vacuum", "mode": "dense"})
    text = client.get("/metrics", headers=KEY).text
    assert 'esrag_http_requests_total{method="POST",mode="dense",route="/v1/search",status="200"}' in text
    bucket = 'esrag_http_request_seconds_bucket{le="0.05",method="POST",mode="dense",route="/v1/search"}'
    assert bucket in text
    assert "secret-1" not in text


def test_refuses_public_bind_without_keys(settings):
    with pytest.raises(ConfigError, match="refusing to serve on 0.0.0.0 without API keys"):
        check_bind(settings, "0.0.0.0")
    check_bind(settings, "127.0.0.1")
    check_bind(settings.model_copy(update={"api_keys": ["k"]}), "0.0.0.0")


class Proxy:
    """A TCP forwarder on loopback that can be switched off and on (to play an ES outage)."""

    def __init__(self, target_port: int):
        self.target = target_port
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.up = False
        self.stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            if not self.up:
                conn.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target))
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a, b):
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.stop = True
        self.thread.join(2)
        self.sock.close()


def test_es_down_503_and_recovery(es):
    with corpus_alias(es) as settings:
        proxy = Proxy(settings.es_port)
        try:
            # load_settings, not model_copy: es_urls is derived from es_url once.
            url = f"http://127.0.0.1:{proxy.port}"
            down = load_settings(index=settings.index, es_url=url, es_max_retries=0)
            with TestClient(create_app(down), base_url="http://localhost") as c:
                r = c.post("/v1/search", json={"query": "bread"})
                assert r.status_code == 503
                assert r.json()["detail"].startswith(f"Elasticsearch at http://127.0.0.1:{proxy.port} is "
                                                     "unavailable")
                assert c.get("/readyz").status_code == 503
                assert c.post("/v1/ask", json={"question": "bread?"}).status_code == 503
                proxy.up = True
                r = c.post("/v1/search", json={"query": "bread", "k": 1})
                assert r.status_code == 200 and r.json()["hits"][0]["chunk_id"] == "bread#0"
                assert c.get("/readyz").status_code == 200
        finally:
            proxy.close()


def test_closed_port_503(settings):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    closed = load_settings(index=settings.index, es_url=f"http://127.0.0.1:{port}", es_max_retries=0)
    with TestClient(create_app(closed), base_url="http://localhost") as c:
        r = c.post("/v1/search", json={"query": "x"})
        assert r.status_code == 503
        assert c.get("/v1/documents/x").status_code == 503
        ready = c.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["redis"] == "ok"

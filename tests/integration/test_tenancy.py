"""Two tenants on one index: every route of the app, walked with each tenant's key, leaks
nothing of the other tenant (real Elasticsearch, real Redis, the real app over HTTP).

The corpus gives both tenants documents with the same words and meanings, so any query
that is not filtered returns the other tenant's chunks at once. Every route the app has,
in its OpenAPI schema or not, must be listed in REQUESTS: a new route (chat, an
OpenAI-compatible endpoint) fails this test until its requests are added here.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch
from elasticsearch.helpers import bulk
from fastapi.testclient import TestClient
from starlette.routing import Route

from esrag.embedder import get_embedder
from esrag.index import ensure_index, wait_for_count
from esrag.keys import KeyFile
from esrag.settings import Settings, load_settings
from esrag.stemming import stem_text
from server.app import create_app

# tenant -> {doc_id: [chunk texts]}; the two tenants share vocabulary and meaning
CORPUS: dict[str, dict[str, list[str]]] = {
    "acme": {
        "acme-revenue": ["Quarterly revenue forecast: revenue grows eight percent next quarter at Acme.",
                         "The sales team expects the forecast to hold through the winter quarter."],
        "acme-bread": ["Bake the sourdough bread at 230 degrees for forty minutes until golden."],
        "acme-onboarding": ["New employees read the handbook and meet their mentor in the first week."],
    },
    "globex": {
        "globex-revenue": ["Quarterly revenue forecast: revenue falls three percent next quarter at Globex.",
                           "The finance team doubts the forecast will hold through the summer quarter."],
        "globex-bread": ["Bake the rye bread at 220 degrees for thirty minutes until the crust is dark."],
        "globex-onboarding": ["New hires study the handbook and shadow a mentor during their first week."],
    },
}
QUERIES = ["quarterly revenue forecast", "how long to bake bread", "first week for new employees",
           "handbook mentor", "acme globex"]
MODES = ("bm25", "dense", "hybrid")


def chunk_docs(tenant: str) -> list[dict[str, Any]]:
    out = []
    for doc_id, texts in CORPUS[tenant].items():
        offset = 0
        for no, text in enumerate(texts):
            out.append({
                "chunk_id": f"{doc_id}#{no}", "doc_id": doc_id, "source": f"{tenant}/{doc_id}.txt",
                "title": doc_id.replace("-", " "), "content_type": "text/plain", "chunk_no": no,
                "start": offset, "end": offset + len(text), "headings": [],
                "doc_hash": hashlib.sha1(doc_id.encode()).hexdigest(),
                "chunk_hash": hashlib.sha1(text.encode()).hexdigest(),
                "text": text, "text_stemmed": stem_text(text, "english"),
                "meta": {"tenant": tenant, "team": "finance"},
            })
            offset += len(text) + 2
    return out


def secrets_of(tenant: str) -> list[str]:
    """What no response to the other tenant may contain: chunk ids and chunk texts."""
    docs = chunk_docs(tenant)
    return [d["chunk_id"] for d in docs] + [d["text"] for d in docs]


@pytest.fixture(scope="module")
def tenancy(es: Elasticsearch, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict]]:
    settings = load_settings(index=f"test-t-{uuid.uuid4().hex[:10]}")
    tmp = tmp_path_factory.mktemp("tenancy")
    embedder = get_embedder(settings)
    index = ensure_index(es, settings, embedder.info)
    docs = chunk_docs("acme") + chunk_docs("globex")
    vectors = embedder.encode_document([d["text"] for d in docs])
    bulk(es, [{"_index": index, "_id": d["chunk_id"],
               "_source": {**d, "model": embedder.name, "embedding": v.tolist()}}
              for d, v in zip(docs, vectors, strict=True)], refresh="wait_for")
    assert wait_for_count(es, index, len(docs)) == len(docs)
    keyfile = KeyFile(tmp / "keys.json")
    keys = {
        "acme-read": keyfile.add("acme-read", "read", {"meta.tenant": "acme"}, None),
        "acme-ingest": keyfile.add("acme-ingest", "ingest", {"meta.tenant": "acme"}, "acme-*"),
        "globex-read": keyfile.add("globex-read", "read", {"meta.tenant": "globex"}, None),
        "admin": keyfile.add("ops", "admin", {}, None),
    }
    (tmp / "root").mkdir()
    (tmp / "root" / "a.txt").write_text("acme notes")
    app_settings = settings.model_copy(update={
        "api_key_file": keyfile.path, "allowed_roots": [tmp / "root"],
        "queue": f"test-{uuid.uuid4().hex[:8]}", "rate_limit_per_minute": 0})
    try:
        with TestClient(create_app(app_settings)) as client:
            yield client, keys
    finally:
        for name in es.indices.get(index=f"{settings.index}*", expand_wildcards="all", allow_no_indices=True):
            es.indices.delete(index=name, ignore_unavailable=True)


def _search_bodies(other: str) -> list[dict[str, Any]]:
    bodies = []
    widening = [{}, {"meta.tenant": other}, {"doc_id": f"{other}-revenue"}, {"meta.team": "finance"},
                {"source": f"{other}/{other}-bread.txt"}]
    for mode in MODES:
        for query in QUERIES:
            bodies.append({"query": query, "mode": mode, "k": 100, "rerank": False})
        bodies.append({"query": QUERIES[0], "mode": mode, "k": 50, "rerank": True})
        for filters in widening:
            bodies.append({"query": QUERIES[0], "mode": mode, "k": 100, "rerank": False, "filters": filters})
    return bodies


def _ask_bodies(other: str) -> list[dict[str, Any]]:
    bodies = []
    for mode in MODES:
        for rerank in (False, True):
            for query in QUERIES[:3]:
                bodies.append({"question": query, "mode": mode, "k": 20, "rerank": rerank})
        bodies.append({"question": QUERIES[0], "mode": mode, "k": 20, "filters": {"meta.tenant": other}})
        bodies.append({"question": QUERIES[0], "mode": mode, "k": 20, "stream": True})
    return bodies


def _document_paths() -> list[str]:
    ids = _doc_ids()
    return ([f"/v1/documents/{d}" for d in ids] + [f"/v1/documents/{d}?after=0&limit=1" for d in ids]
            + ["/v1/documents/globex-revenue%23", "/v1/documents/*"])


def requests_for(other: str) -> dict[tuple[str, str], list[tuple[str, dict[str, Any] | None]]]:
    """(method, route path) -> [(URL, JSON body)] sent with a key of the tenant that is not ``other``."""
    job = "0123456789ab"
    return {
        ("POST", "/v1/search"): [("/v1/search", b) for b in _search_bodies(other)],
        ("POST", "/v1/ask"): [("/v1/ask", b) for b in _ask_bodies(other)],
        ("GET", "/v1/documents/{doc_id:path}"): [(p, None) for p in _document_paths()],
        ("POST", "/v1/ingest"): [("/v1/ingest", {"paths": ["a.txt"], "index": f"{other}-docs"})],
        ("GET", "/v1/jobs"): [("/v1/jobs", None)],
        ("GET", "/v1/jobs/{job_id}"): [(f"/v1/jobs/{job}", None)],
        ("GET", "/healthz"): [("/healthz", None)],
        ("GET", "/readyz"): [("/readyz", None)],
        ("GET", "/metrics"): [("/metrics", None)],
        ("GET", "/openapi.json"): [("/openapi.json", None)],
        ("GET", "/docs"): [("/docs", None)],
        ("GET", "/dashboard"): [("/dashboard", None)],
        ("GET", "/dashboard/api/state"): [("/dashboard/api/state", None)],
        ("POST", "/dashboard/api/jobs/{job_id}/retry"): [(f"/dashboard/api/jobs/{job}/retry", None)],
        ("POST", "/dashboard/api/jobs/{job_id}/cancel"): [(f"/dashboard/api/jobs/{job}/cancel", None)],
        ("POST", "/v1/chat"): [("/v1/chat", _chat_body(b)) for b in _ask_bodies(other)],
        ("POST", "/v1/chat/completions"): [("/v1/chat/completions", _completion_body(b))
                                           for b in _ask_bodies(other) if b["mode"] == "hybrid"]
        + [("/v1/chat/completions", {"model": f"{other}-docs",
                                     "messages": [{"role": "user", "content": "x"}]})],
        ("GET", "/v1/models"): [("/v1/models", None)],
        ("GET", "/dashboard/search"): [("/dashboard/search", None)],
        ("POST", "/dashboard/api/search/compare"): [("/dashboard/api/search/compare", _compare_body(b))
                                                    for b in _search_bodies(other) if b["mode"] == "hybrid"],
        ("POST", "/dashboard/api/search/ask"): [("/dashboard/api/search/ask", _workbench_ask(b))
                                                for b in _ask_bodies(other) if b["mode"] == "hybrid"],
        ("GET", "/dashboard/api/search/document"): [(f"/dashboard/api/search/document?doc_id={d}", None)
                                                    for d in _doc_ids()],
        ("GET", "/dashboard/api/search/tuning"): [("/dashboard/api/search/tuning", None)],
        ("POST", "/dashboard/api/judgments"): [("/dashboard/api/judgments", {
            "query": QUERIES[0], "chunk_id": f"{other}-revenue:0:x", "doc_id": f"{other}-revenue",
            "relevance": 1})],
        ("GET", "/dashboard/api/judgments"): [("/dashboard/api/judgments", None)],
    }


def _doc_ids() -> list[str]:
    return [doc_id for tenant in CORPUS.values() for doc_id in tenant]


def _chat_body(ask: dict[str, Any]) -> dict[str, Any]:
    """A two-turn conversation whose follow-up is the /v1/ask question."""
    body = {k: v for k, v in ask.items() if k not in ("question", "reasoning")}
    return {**body, "messages": [{"role": "user", "content": QUERIES[1]},
                                 {"role": "assistant", "content": "The passages do not contain the answer."},
                                 {"role": "user", "content": ask["question"]}]}


def _completion_body(ask: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "default", "stream": bool(ask.get("stream")),
                            "messages": [{"role": "user", "content": ask["question"]}]}
    if "filters" in ask:
        body["filters"] = ask["filters"]
    return body


def _compare_body(search: dict[str, Any]) -> dict[str, Any]:
    """The workbench runs every mode at once: a /v1/search body without its mode."""
    return {k: v for k, v in search.items() if k != "mode"}


def _workbench_ask(ask: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in ask.items() if k not in ("mode", "stream")}


def _walk(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    for route in routes:
        included = getattr(route, "original_router", None)  # FastAPI >= 0.160 keeps routers nested
        if included is not None:
            yield from _walk(included.routes, prefix + getattr(route.include_context, "prefix", ""))
        elif isinstance(route, Route):
            yield from ((m, prefix + route.path) for m in route.methods or () if m != "HEAD")
        elif hasattr(route, "routes"):  # a mounted sub-application
            yield from _walk(route.routes, prefix + route.path)
        else:
            raise AssertionError(f"unknown kind of route {route!r}: teach this test to walk it")


def app_routes(client: TestClient) -> set[tuple[str, str]]:
    """Every (method, path) the app serves, in its OpenAPI schema or not."""
    return set(_walk(client.app.routes))


def test_every_route_is_walked(tenancy: tuple[TestClient, dict]) -> None:
    client, keys = tenancy
    schema = client.get("/openapi.json", headers={"X-API-Key": keys["admin"]}).json()
    in_schema = {(m.upper(), p) for p, ops in schema["paths"].items() for m in ops}
    routes = app_routes(client)
    assert in_schema <= {(m, p.replace(":path", "")) for m, p in routes}
    assert routes == set(requests_for("globex")), "add the new route's requests to REQUESTS in this test"


@pytest.mark.timeout(900)
@pytest.mark.parametrize(("key_name", "other"), [("acme-read", "globex"), ("acme-ingest", "globex"),
                                                 ("globex-read", "acme")])
def test_no_response_leaks_the_other_tenant(tenancy: tuple[TestClient, dict], key_name: str,
                                            other: str) -> None:
    client, keys = tenancy
    headers = {"X-API-Key": keys[key_name]}
    own = key_name.split("-")[0]
    leaks: list[str] = []
    own_seen: set[str] = set()
    statuses: dict[tuple[str, str], set[int]] = {}
    for (method, route), calls in requests_for(other).items():
        for url, body in calls:
            r = client.request(method, url, headers=headers, json=body)
            statuses.setdefault((method, route), set()).add(r.status_code)
            text = r.text
            leaks += [f"{method} {url} {json.dumps(body)} -> {s[:40]!r}"
                      for s in secrets_of(other) if s in text]
            own_seen |= {s for s in secrets_of(own) if s in text}
    assert leaks == []
    # not vacuous: the tenant's own chunks came back, and every leak-prone route answered
    assert set(secrets_of(own)) <= own_seen
    assert statuses[("POST", "/v1/search")] == {200, 403}
    assert statuses[("POST", "/v1/ask")] == {200, 403}
    assert statuses[("POST", "/v1/chat")] == {200, 403}
    assert statuses[("POST", "/v1/chat/completions")] == {200, 403, 404}
    assert statuses[("GET", "/v1/documents/{doc_id:path}")] == {200, 404}
    # the workbench: a read key's own view, scoped like /v1/search
    assert statuses[("POST", "/dashboard/api/search/compare")] == {200, 403}
    assert statuses[("POST", "/dashboard/api/search/ask")] == {200, 403}
    assert statuses[("GET", "/dashboard/api/search/document")] == {200, 404}
    assert statuses[("GET", "/dashboard/search")] == {200}
    # read and ingest keys: no job listing, no dashboard, no metrics
    for route in [("GET", "/v1/jobs"), ("GET", "/dashboard/api/state"), ("GET", "/metrics"),
                  ("POST", "/dashboard/api/jobs/{job_id}/retry"),
                  ("POST", "/dashboard/api/jobs/{job_id}/cancel"), ("GET", "/dashboard"),
                  ("POST", "/dashboard/api/judgments"), ("GET", "/dashboard/api/judgments")]:
        assert statuses[route] == {403}, route
    expected = {403} if key_name.endswith("read") else {404}  # an ingest key may read its own jobs only
    assert statuses[("GET", "/v1/jobs/{job_id}")] == expected
    assert statuses[("POST", "/v1/ingest")] == {403}  # read keys, and the ingest key into another's index


def test_widening_filter_is_refused_with_one_line(tenancy: tuple[TestClient, dict]) -> None:
    client, keys = tenancy
    r = client.post("/v1/search", headers={"X-API-Key": keys["acme-read"]},
                    json={"query": "revenue", "filters": {"meta.tenant": "globex"}})
    assert (r.status_code, r.json()) == (403, {"detail": "filter 'meta.tenant' is fixed by your API key and "
                                                         "cannot be changed"})
    same = client.post("/v1/search", headers={"X-API-Key": keys["acme-read"]},
                       json={"query": "revenue", "mode": "bm25", "filters": {"meta.tenant": "acme"}})
    assert sorted(h["chunk_id"] for h in same.json()["hits"]) == ["acme-revenue#0", "acme-revenue#1"]


def test_admin_sees_both_tenants_and_read_key_gets_403(tenancy: tuple[TestClient, dict]) -> None:
    client, keys = tenancy
    r = client.post("/v1/search", headers={"X-API-Key": keys["admin"]},
                    json={"query": "quarterly revenue forecast", "mode": "bm25", "k": 100})
    assert {h["doc_id"] for h in r.json()["hits"]} >= {"acme-revenue", "globex-revenue"}
    read = {"X-API-Key": keys["acme-read"]}
    assert client.get("/v1/jobs", headers=read).json() == {
        "detail": "the API key 'acme-read' (read) may not use this route; it needs the ingest role"}
    assert client.get("/dashboard/api/state", headers=read).status_code == 403
    assert client.post("/v1/ingest", headers=read, json={"paths": ["a.txt"]}).status_code == 403
    assert client.get("/dashboard/api/state", headers={"X-API-Key": keys["admin"]}).status_code == 200
    bad = client.post("/v1/search", headers={"X-API-Key": keys["acme-read"] + "x"}, json={"query": "q"})
    assert (bad.status_code, bad.json()) == (401, {"detail": "invalid API key"})


def test_revoked_key_is_refused_at_once(tenancy: tuple[TestClient, dict], tmp_path: Path) -> None:
    client, keys = tenancy
    settings: Settings = client.app.state.settings
    keyfile = KeyFile(settings.key_file)
    temp = keyfile.add(f"temp-{uuid.uuid4().hex[:6]}", "read", {"meta.tenant": "acme"}, None)
    assert client.post("/v1/search", headers={"X-API-Key": temp}, json={"query": "bread"}).status_code == 200
    keyfile.revoke(next(r.name for r in keyfile.records() if r.name.startswith("temp-")))
    assert client.post("/v1/search", headers={"X-API-Key": temp}, json={"query": "bread"}).status_code == 401
    stored = keyfile.path.read_text()
    assert all(k not in stored for k in [*keys.values(), temp])  # only hashes are stored
    assert oct(keyfile.path.stat().st_mode & 0o777) == "0o600"

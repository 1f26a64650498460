"""Access control over real HTTP: the keyless Host check, no CORS, rate limit on with keys,
bounded requests, ingest keys' index pattern and stamp, credentials kept out of outputs."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from dashboard_server import free_port, serve
from fastapi.testclient import TestClient
from query_corpus import corpus_alias

from esrag.keys import KeyFile
from esrag.settings import Settings, load_settings
from query.api.limits import DEFAULT_KEYED_RATE, rate_per_minute
from server.app import create_app
from workers.jobstore import JobStore


@pytest.fixture(scope="module")
def corpus(es) -> Iterator[Settings]:
    with corpus_alias(es) as settings:
        yield settings


@pytest.mark.timeout(60)
@pytest.mark.parametrize("host", ["evil.example", "localhost.evil.example", "127.0.0.1.nip.io", "10.0.0.5",
                                  "192.168.1.2:8000"])
def test_keyless_refuses_a_forged_host(settings: Settings, host: str) -> None:
    with serve(create_app(settings)) as base:  # uvicorn on 127.0.0.1: what a rebinding page reaches
        r = httpx.get(f"{base}/v1/jobs", headers={"Host": host}, timeout=30)
        post = httpx.post(f"{base}/v1/ingest", headers={"Host": host}, json={"paths": ["x"]}, timeout=30)
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    assert (r.status_code, r.json()) == (400, {
        "detail": f"Host {name!r} is not a loopback name; without API keys the API answers only localhost, "
                  "127.0.0.1 and ::1"})
    assert post.status_code == 400


@pytest.mark.timeout(60)
def test_keyless_answers_loopback_names_and_sends_no_cors(settings: Settings) -> None:
    with serve(create_app(settings)) as base:
        for host in ["localhost", "localhost:8000", "127.0.0.1", "127.0.0.2:80", "[::1]:8000",
                     "app.localhost"]:
            r = httpx.get(f"{base}/healthz", headers={"Host": host, "Origin": "http://evil.example"},
                          timeout=30)
            assert r.status_code == 200, host
            assert not [h for h in r.headers if h.lower().startswith("access-control-")]
        pre = httpx.options(f"{base}/v1/search", timeout=30, headers={
            "Host": "localhost", "Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})
        assert pre.status_code == 405
        assert not [h for h in pre.headers if h.lower().startswith("access-control-")]


@pytest.mark.timeout(60)
def test_keyed_server_does_not_check_host(settings: Settings) -> None:
    s = settings.model_copy(update={"api_keys": ["k-8c1d0e"]})
    with serve(create_app(s)) as base:
        r = httpx.get(f"{base}/healthz", headers={"Host": "api.example.com"}, timeout=30)
    assert r.status_code == 200


@pytest.mark.timeout(120)
def test_rate_limit_is_on_by_default_with_keys(settings: Settings, tmp_path: Path) -> None:
    assert rate_per_minute(settings) == 0  # keyless, loopback: off
    keyfile = KeyFile(tmp_path / "keys.json")
    key = keyfile.add("ops", "admin", {}, None)
    s = settings.model_copy(update={"api_key_file": keyfile.path})
    assert rate_per_minute(s) == DEFAULT_KEYED_RATE == 600
    codes: list[int] = []
    with TestClient(create_app(s)) as c:
        while 429 not in codes and len(codes) < 3 * DEFAULT_KEYED_RATE:  # the bucket refills 10/s meanwhile
            r = c.get("/metrics", headers={"X-API-Key": key})
            codes.append(r.status_code)
    assert codes[:DEFAULT_KEYED_RATE] == [200] * DEFAULT_KEYED_RATE  # a full burst first
    assert codes[-1] == 429 and int(r.headers["retry-after"]) >= 1


@pytest.mark.timeout(120)
def test_documents_are_paged_with_a_maximum(corpus: Settings) -> None:
    s = corpus.model_copy(update={"api_keys": ["k1"], "documents_max_page": 1})
    h = {"X-API-Key": "k1"}
    with TestClient(create_app(s)) as c:
        first = c.get("/v1/documents/python-files", headers=h).json()
        assert [x["chunk_id"] for x in first["chunks"]] == ["python-files#0"]
        assert first["next_after"] == 0
        second = c.get("/v1/documents/python-files?after=0", headers=h).json()
        assert ([x["chunk_id"] for x in second["chunks"]], second["next_after"]) == (["python-files#1"], None)
        over = c.get("/v1/documents/python-files?limit=2", headers=h)
        assert (over.status_code, over.json()["detail"][0]["msg"]) == (
            422, "limit is at most 1 (ESRAG_DOCUMENTS_MAX_PAGE)")


@pytest.mark.timeout(120)
def test_rerank_depth_a_request_can_force_is_capped(corpus: Settings) -> None:
    s = corpus.model_copy(update={"api_keys": ["k1"]})
    with TestClient(create_app(s)) as c:
        r = c.post("/v1/search", headers={"X-API-Key": "k1"}, json={"query": "file", "k": 51, "rerank": True})
        assert (r.status_code, r.json()["detail"][0]["msg"]) == (
            422, "k is at most 50 with rerank (ESRAG_RERANK_REQUEST_MAX)")
        plain = c.post("/v1/search", headers={"X-API-Key": "k1"}, json={"query": "file", "k": 100,
                                                                          "rerank": False})
        assert plain.status_code == 200


@pytest.fixture()
def ingest_app(settings: Settings, tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str], Path]]:
    root = tmp_path / "root"
    root.mkdir()
    for name in ("a.txt", "b.txt"):
        (root / name).write_text(f"{name} notes")
    keyfile = KeyFile(tmp_path / "keys.json")
    keys = {"acme": keyfile.add("acme-ingest", "ingest", {"meta.tenant": "acme"}, "acme-*"),
            "globex": keyfile.add("globex-ingest", "ingest", {"meta.tenant": "globex"}, "globex-*"),
            "admin": keyfile.add("ops", "admin", {}, None)}
    s = settings.model_copy(update={"api_key_file": keyfile.path, "allowed_roots": [root],
                                    "ingest_max_files": 2, "queue": f"test-{uuid.uuid4().hex[:8]}"})
    with TestClient(create_app(s)) as c:
        yield c, keys, root


@pytest.mark.timeout(60)
def test_ingest_key_index_pattern_stamp_and_own_jobs(ingest_app) -> None:
    c, keys, root = ingest_app
    acme, globex = {"X-API-Key": keys["acme"]}, {"X-API-Key": keys["globex"]}
    denied = c.post("/v1/ingest", headers=acme, json={"paths": ["a.txt"], "index": "globex-docs"})
    assert (denied.status_code, denied.json()) == (403, {
        "detail": "the API key 'acme-ingest' may not ingest into index 'globex-docs' (allowed: acme-*)"})
    assert c.post("/v1/ingest", headers=acme, json={"paths": ["a.txt"]}).status_code == 403  # default index
    r = c.post("/v1/ingest", headers=acme, json={"paths": ["a.txt"], "index": "acme-docs"})
    assert r.status_code == 202, r.text
    job = r.json()["job"]
    store = JobStore.from_url(c.app.state.settings.redis_url)
    try:
        access = store.access(job)
        assert (access.owner, access.stamp, access.roots) == ("acme-ingest", {"tenant": "acme"},
                                                               [os.path.realpath(root)])
        assert store.get(job).index == "acme-docs"
        assert c.get(f"/v1/jobs/{job}", headers=acme).status_code == 200
        assert c.get(f"/v1/jobs/{job}", headers=globex).status_code == 404
        assert c.get("/v1/jobs", headers=acme).status_code == 403
        assert job in [j["id"] for j in c.get("/v1/jobs", headers={"X-API-Key": keys["admin"]}).json()]
    finally:
        store.delete(job)


@pytest.mark.timeout(60)
def test_files_per_job_are_capped_on_the_worker(ingest_app) -> None:
    """The POST answers before the folder is walked; the cap is applied by the worker that
    expands it (test_api_ingest_expand.py::test_past_the_cap_the_job_fails_with_one_line_...)."""
    c, keys, root = ingest_app
    (root / "c.txt").write_text("c notes")
    r = c.post("/v1/ingest", headers={"X-API-Key": keys["admin"]}, json={"paths": ["."]})
    assert (r.status_code, r.json()["status"], r.json()["files"]) == (202, "expanding", 0)
    store = JobStore.from_url(c.app.state.settings.redis_url)
    try:
        assert store.expand_plan(r.json()["job"]).max_files == 2
    finally:
        store.delete(r.json()["job"])


PASSWORD = "p@ss:w0rd/x"  # URL-encoded in the URLs below
ENCODED = "p%40ss%3Aw0rd%2Fx"


@pytest.mark.timeout(120)
def test_no_credentials_in_dashboard_state_readyz_and_errors(settings: Settings) -> None:
    s = load_settings(index=settings.index, es_url=f"http://elastic:{ENCODED}@127.0.0.1:{free_port()}",
                      redis_url=f"redis://admin:{ENCODED}@127.0.0.1:{free_port()}/0", es_max_retries=0,
                      api_keys=["k-admin-7f3e"])
    with serve(create_app(s)) as base:
        h = {"X-API-Key": "k-admin-7f3e"}
        bodies = [httpx.get(f"{base}/dashboard/api/state", headers=h, timeout=60).text,
                  httpx.get(f"{base}/readyz", timeout=60).text,
                  httpx.post(f"{base}/v1/search", headers=h, json={"query": "x", "mode": "bm25"},
                             timeout=60).text]
    for body in bodies:
        for secret in (ENCODED, PASSWORD, "elastic:", "admin:", "k-admin-7f3e"):
            assert secret not in body, (secret, body[:300])
    assert '"es_url": "http://127.0.0.1:' in bodies[0].replace('":"', '": "')


@pytest.mark.timeout(120)
def test_no_credentials_in_cli_status(settings: Settings) -> None:
    env = {**os.environ, "ESRAG_ES_URL": f"http://elastic:{ENCODED}@127.0.0.1:{free_port()}",
           "ESRAG_REDIS_URL": f"redis://:{ENCODED}@127.0.0.1:{free_port()}/0", "ESRAG_ES_MAX_RETRIES": "0"}
    for args in (["status", "--json"], ["status"]):
        out = subprocess.run([sys.executable, "-m", "esrag.cli", *args], env=env, capture_output=True,
                             text=True, timeout=100)
        assert out.returncode == 1
        assert ENCODED not in out.stdout + out.stderr and "elastic:" not in out.stdout + out.stderr
        assert "127.0.0.1" in out.stdout

"""The dashboard's access rules and its behaviour with Elasticsearch or Redis down."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
from dashboard_server import dashboard_app, free_port, get, serve

from dashboard.auth import COOKIE, cookie_token
from esrag.settings import Settings

KEY = "dash-test-key-1"
SECTIONS = ("redis", "jobs", "workers", "queues", "elasticsearch", "queries")


@pytest.mark.timeout(60)
def test_page_and_state_refuse_without_or_with_wrong_key(settings: Settings):
    s = settings.model_copy(update={"api_keys": [KEY, "other-key"]})
    with serve(dashboard_app(s)) as base:
        for url in (f"{base}/dashboard", f"{base}/dashboard/api/state"):
            assert get(url).status_code == 401
            assert get(url, headers={"X-API-Key": "wrong"}).status_code == 401
            assert get(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
            assert get(url, cookies={COOKIE: cookie_token("wrong")}).status_code == 401
        page = get(f"{base}/dashboard")
        assert "401: API key required" in page.text
        assert page.headers["content-type"].startswith("text/html")
        assert get(f"{base}/dashboard?key=wrong").status_code == 401
        assert get(f"{base}/dashboard/api/state").json() == {"detail": "missing or invalid API key"}
        for path in ("retry", "cancel"):
            assert httpx.post(f"{base}/dashboard/api/jobs/x/{path}", timeout=30).status_code == 401

        # the right key, as header, bearer token, or through the cookie the page sets
        assert get(f"{base}/dashboard/api/state", headers={"X-API-Key": KEY}).status_code == 200
        assert get(f"{base}/dashboard", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
        login = get(f"{base}/dashboard?key=other-key")
        assert login.status_code == 303
        assert login.headers["location"] == "/dashboard"
        set_cookie = login.headers["set-cookie"]
        assert f"{COOKIE}={cookie_token('other-key')}" in set_cookie
        for attribute in ("HttpOnly", "SameSite=strict", "Path=/;"):
            assert attribute in set_cookie
        with httpx.Client(base_url=base, timeout=30) as browser:
            browser.cookies.set(COOKIE, cookie_token("other-key"))
            assert browser.get("/dashboard").status_code == 200
            assert browser.get("/dashboard/api/state").status_code == 200
            # a cookie alone does not authorise a POST (no cross-site form can send X-Dashboard)
            assert browser.post("/dashboard/api/jobs/nojob/cancel").status_code == 401
            missing = browser.post("/dashboard/api/jobs/nojob/cancel", headers={"X-Dashboard": "1"})
            assert (missing.status_code, missing.json()) == (404, {"detail": "no job nojob"})


@pytest.mark.timeout(60)
def test_state_reports_redis_and_es_down(settings: Settings):
    s = settings.model_copy(update={
        "api_keys": [KEY], "es_url": f"http://127.0.0.1:{free_port()}",
        "redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    with serve(dashboard_app(s)) as base:
        r = get(f"{base}/dashboard/api/state", headers={"X-API-Key": KEY})
        assert r.status_code == 200
        state = r.json()
        for name in SECTIONS:
            assert state[name]["up"] is False, name
            assert state[name]["error"].split(":")[0] in ("ConnectionError", "ConnectionRefusedError"), \
                (name, state[name]["error"])
            assert "Traceback" not in state[name]["error"]
        page = get(f"{base}/dashboard", headers={"X-API-Key": KEY})
        assert page.status_code == 200
        retry = httpx.post(f"{base}/dashboard/api/jobs/abc/retry", headers={"X-API-Key": KEY}, timeout=30)
        assert retry.status_code == 503
        assert retry.json()["detail"].startswith("Redis is unavailable (ConnectionError")


@pytest.mark.timeout(60)
def test_only_es_down_keeps_redis_sections(settings: Settings):
    queue = f"test-{uuid.uuid4().hex[:8]}"
    s = settings.model_copy(update={"api_keys": [KEY], "es_url": f"http://127.0.0.1:{free_port()}",
                                    "queue": queue})
    with serve(dashboard_app(s)) as base:
        state = get(f"{base}/dashboard/api/state", headers={"X-API-Key": KEY}).json()
    assert state["elasticsearch"]["up"] is False
    assert state["elasticsearch"]["error"].startswith("ConnectionError")
    for name in ("redis", "jobs", "workers", "queues", "queries"):
        assert state[name]["up"] is True, name
    assert {"name": queue, "ready": 0} in state["queues"]["queues"]


@pytest.mark.timeout(120)
def test_api_app_serves_dashboard_and_logs_queries(settings: Settings):
    import redis

    from esrag import querylog
    from server.app import create_app

    # Redis database 15 keeps this test's query log away from the real one
    s = settings.model_copy(update={"api_keys": [KEY], "redis_url": "redis://127.0.0.1:6379/15"})
    r = redis.Redis.from_url(s.redis_url)
    r.delete(querylog.KEY)
    try:
        with serve(create_app(s)) as base:
            assert get(f"{base}/dashboard").status_code == 401
            login = get(f"{base}/dashboard?key={KEY}")
            assert login.status_code == 303
            with httpx.Client(base_url=base, timeout=60) as browser:
                browser.cookies.set(COOKIE, cookie_token(KEY))
                assert "esrag operations" in browser.get("/dashboard").text
                # no index behind the test alias yet: the search fails and is logged as an error
                for _ in range(2):
                    found = browser.post("/v1/search", json={"query": "alpha", "mode": "bm25"},
                                         headers={"X-API-Key": KEY})
                    assert found.status_code == 404
                deadline = 50
                while r.llen(querylog.KEY) < 2 and deadline:
                    time.sleep(0.1)
                    deadline -= 1
                queries = browser.get("/dashboard/api/state").json()["queries"]
        assert queries["up"] is True
        assert list(queries["modes"]) == ["search:bm25"]
        assert (queries["modes"]["search:bm25"]["count"], queries["modes"]["search:bm25"]["errors"]) == (2, 2)
    finally:
        r.delete(querylog.KEY)
        r.close()

"""POST /v1/ingest and GET /v1/jobs through the real app, Redis and a real worker-less queue."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from esrag.settings import Settings
from server.app import create_app
from workers.jobstore import JobStore

KEY = "test-key-123"


@pytest.fixture()
def roots(tmp_path: Path) -> tuple[Path, Path]:
    inside = tmp_path / "allowed"
    outside = tmp_path / "secret"
    inside.mkdir()
    outside.mkdir()
    (inside / "a.txt").write_text("alpha document")
    (inside / "b.txt").write_text("beta document")
    (outside / "s.txt").write_text("secret document")
    os.symlink(outside / "s.txt", inside / "link.txt")
    return inside, outside


@pytest.fixture()
def client(settings: Settings, roots: tuple[Path, Path]) -> TestClient:
    s = settings.model_copy(update={"api_keys": [KEY], "allowed_roots": [roots[0]],
                                    "queue": f"test-{uuid.uuid4().hex[:8]}"})
    with TestClient(create_app(s)) as c:
        yield c


def _post(client: TestClient, body: dict) -> object:
    return client.post("/v1/ingest", json=body, headers={"X-API-Key": KEY})


def test_submit_and_read_job(client: TestClient, roots: tuple[Path, Path]) -> None:
    inside, _ = roots
    r = _post(client, {"paths": [str(inside / "a.txt"), "b.txt"]})
    assert r.status_code == 202, r.text
    job_id = r.json()["job"]
    assert (r.json()["status"], r.json()["files"]) == ("expanding", 0)  # a worker expands the paths
    try:
        got = client.get(f"/v1/jobs/{job_id}", headers={"X-API-Key": KEY})
        assert got.status_code == 200
        assert (got.json()["status"], got.json()["files_total"], got.json()["tasks_total"]) == (
            "expanding", 0, 1)
        store = JobStore.from_url(client.app.state.settings.redis_url)
        assert store.tasks(job_id)[f"{job_id}-expand"]["files"] == [str(inside / "a.txt"),
                                                                    str(inside / "b.txt")]
        listed = client.get("/v1/jobs", headers={"X-API-Key": KEY}).json()
        assert job_id in [j["id"] for j in listed]
    finally:
        JobStore.from_url(client.app.state.settings.redis_url).delete(job_id)


@pytest.mark.parametrize("path", ["../secret/s.txt", "link.txt", "/etc/passwd", "SECRET_ABS"])
def test_paths_outside_roots_are_refused(client: TestClient, roots: tuple[Path, Path], path: str) -> None:
    inside, outside = roots
    raw = str(outside / "s.txt") if path == "SECRET_ABS" else path
    r = _post(client, {"paths": [raw]})
    assert r.status_code == 400
    assert r.json() == {"detail": f"path {raw!r} is outside the allowed roots"}


def test_a_folder_is_accepted_unexpanded(client: TestClient, roots: tuple[Path, Path]) -> None:
    """The folder's links are checked by the worker when it opens each file
    (test_api_ingest_expand.py::test_post_answers_before_expansion_and_a_worker_expands)."""
    inside, outside = roots
    r = _post(client, {"paths": [str(inside)]})
    assert (r.status_code, r.json()["status"]) == (202, "expanding")
    JobStore.from_url(client.app.state.settings.redis_url).delete(r.json()["job"])


def test_requires_key(client: TestClient) -> None:
    assert client.post("/v1/ingest", json={"paths": ["a.txt"]}).status_code == 401
    assert client.get("/v1/jobs").status_code == 401


def test_unknown_job_is_404(client: TestClient) -> None:
    assert client.get("/v1/jobs/nope", headers={"X-API-Key": KEY}).status_code == 404

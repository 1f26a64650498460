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
    assert r.json()["files"] == 2
    try:
        got = client.get(f"/v1/jobs/{job_id}", headers={"X-API-Key": KEY})
        assert got.status_code == 200
        assert (got.json()["status"], got.json()["files_total"]) == ("queued", 2)
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


def test_symlink_inside_a_folder_is_refused(client: TestClient, roots: tuple[Path, Path]) -> None:
    inside, outside = roots
    r = _post(client, {"paths": [str(inside)]})
    assert r.status_code == 400
    assert r.json()["detail"] == f"path {str(inside / 'link.txt')!r} is outside the allowed roots"


def test_requires_key(client: TestClient) -> None:
    assert client.post("/v1/ingest", json={"paths": ["a.txt"]}).status_code == 401
    assert client.get("/v1/jobs").status_code == 401


def test_unknown_job_is_404(client: TestClient) -> None:
    assert client.get("/v1/jobs/nope", headers={"X-API-Key": KEY}).status_code == 404

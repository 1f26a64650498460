"""An ingest key's job through a real worker: its filters are stamped on what it indexes,
and a file swapped for a symbolic link out of the allowed roots after the submit is refused
when the worker opens it (real Redis of its own, real `esrag worker`, real Elasticsearch)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from dashboard_server import free_port
from fastapi.testclient import TestClient

from esrag import localredis
from esrag.keys import KeyFile
from esrag.settings import Settings
from server.app import create_app
from workers.jobstore import FINAL_STATES, JobStore


@pytest.fixture()
def redis_url(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--dir", str(tmp_path), "--save", ""],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        for _ in range(100):
            if localredis.ping(url):
                break
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.mark.timeout(300)
def test_worker_stamps_the_key_filter_and_refuses_a_swapped_symlink(settings: Settings, redis_url: str,
                                                                     tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "plan.txt").write_text("The acme launch plan ships the comet rocket in spring.")
    (root / "notes.txt").write_text("The acme notes list the comet rocket engineers.")
    (outside / "secret.txt").write_text("The payroll secret says the comet rocket team earns triple.")
    keyfile = KeyFile(tmp_path / "keys.json")
    ingest = keyfile.add("acme-ingest", "ingest", {"meta.tenant": "acme"}, f"{settings.index}*")
    acme = keyfile.add("acme-read", "read", {"meta.tenant": "acme"}, None)
    globex = keyfile.add("globex-read", "read", {"meta.tenant": "globex"}, None)
    admin = keyfile.add("ops", "admin", {}, None)
    queue = f"test-{uuid.uuid4().hex[:8]}"
    s = settings.model_copy(update={"api_key_file": keyfile.path, "allowed_roots": [root],
                                    "redis_url": redis_url, "queue": queue})
    with TestClient(create_app(s)) as c:
        r = c.post("/v1/ingest", headers={"X-API-Key": ingest},
                   json={"paths": ["."], "index": settings.index})
        assert (r.status_code, r.json()["status"]) == (202, "expanding"), r.text
        job_id = r.json()["job"]
        # after the submit, before any worker opens it: notes.txt becomes a link out of the roots
        (root / "notes.txt").unlink()
        os.symlink(outside / "secret.txt", root / "notes.txt")
        env = {**os.environ, "ESRAG_REDIS_URL": redis_url, "ESRAG_QUEUE": queue,
               "ESRAG_INDEX": settings.index, "ESRAG_TORCH_THREADS": "1"}
        log = open(tmp_path / "worker.log", "wb")  # noqa: SIM115
        worker = subprocess.Popen([sys.executable, "-m", "esrag.cli", "worker", "--loglevel", "WARNING"],
                                  env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            store = JobStore.from_url(redis_url)
            deadline = time.monotonic() + 240
            while (job := store.get(job_id)) is None or job.status not in FINAL_STATES:
                assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()[-2000:]
                time.sleep(0.5)
        finally:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=10)
            log.close()
        notes = str(root / "notes.txt")
        assert job.failures == [{"source": notes, "error": f"{notes} resolves to {outside / 'secret.txt'}, "
                                                           "outside the allowed roots; not read"}]
        assert (job.counters["documents"], job.files_total) == (1, 2)

        def hits(key: str) -> list[dict]:
            r = c.post("/v1/search", headers={"X-API-Key": key},
                       json={"query": "comet rocket", "mode": "bm25", "k": 100})
            assert r.status_code == 200, r.text
            return r.json()["hits"]

        everything = hits(admin)
        assert [(h["source"], h["meta"]) for h in everything] == [
            (str(root / "plan.txt"), {"tenant": "acme"})]
        assert [h["chunk_id"] for h in hits(acme)] == [everything[0]["chunk_id"]]
        assert hits(globex) == []
        assert "payroll" not in str(everything)

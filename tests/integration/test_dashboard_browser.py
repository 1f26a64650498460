"""End to end in headless Chromium: a real worker ingests a job while the dashboard watches.

Set ESRAG_DASHBOARD_SCREENSHOT=path to also save the final screenshot there (docs/dashboard.png);
that run ingests a larger job so the screenshot shows a fuller throughput chart.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from dashboard_server import serve

from esrag.es import make_client
from esrag.index import alias_target
from esrag.settings import Settings
from server.app import create_app
from workers.jobstore import FINAL_STATES, JobStore
from workers.submit import submit_files

pw = pytest.importorskip("playwright.sync_api")
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
KEY = "browser-test-key"
WORDS = "ocean river mountain forest desert valley glacier canyon meadow island volcano prairie".split()


@pytest.fixture()
def worker_env(settings: Settings, tmp_path: Path) -> Iterator[tuple[Settings, subprocess.Popen]]:
    queue = f"test-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "ESRAG_QUEUE": queue, "ESRAG_INDEX": settings.index, "ESRAG_TASK_MAX_FILES": "1",
           "ESRAG_TORCH_THREADS": "1", "ESRAG_TASK_RETRY_BACKOFF_MAX": "2"}
    log = open(tmp_path / "worker.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "esrag.cli", "worker", "--loglevel", "WARNING"],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    s = settings.model_copy(update={"queue": queue, "task_max_files": 1, "api_keys": [KEY]})
    yield s, proc
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    log.close()
    r = redis.Redis.from_url(s.redis_url)
    r.delete(queue, f"{queue}-idle")
    r.close()


@pytest.fixture()
def jobs(worker_env) -> Iterator[list[str]]:
    """Ids of the jobs a test submits; their records are removed from the job store afterwards."""
    ids: list[str] = []
    yield ids
    store = JobStore.from_url(worker_env[0].redis_url)
    for job_id in ids:
        store.delete(job_id)


def _wait_final(store: JobStore, job_id: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while store.status(job_id) not in FINAL_STATES:
        assert time.monotonic() < deadline, f"job {job_id} did not finish in {timeout}s"
        time.sleep(0.5)


def _search(base: str, queries: list[str]) -> None:
    import httpx

    for mode in ("bm25", "dense", "hybrid"):
        for q in queries:
            r = httpx.post(f"{base}/v1/search", json={"query": q, "mode": mode}, headers={"X-API-Key": KEY},
                           timeout=120)
            assert r.status_code == 200, r.text


def _files(folder: Path, n_good: int, paragraphs: int) -> list[Path]:
    folder.mkdir()
    files = []
    for i in range(n_good):
        text = "\n\n".join(f"Note {i}.{p}: " + " ".join(WORDS[(i + p + k) % len(WORDS)] for k in range(90))
                           for p in range(paragraphs))
        files.append(folder / f"note{i}.txt")
        files[-1].write_text(text)
    bad = folder / "broken.pdf"
    bad.write_bytes(os.urandom(4096))
    return [*files, bad]


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium not installed (apt-get install chromium)")
@pytest.mark.timeout(420)
def test_dashboard_follows_a_job_retry_and_cancel(worker_env, jobs: list[str], tmp_path: Path):
    s, worker = worker_env
    screenshot_to = os.environ.get("ESRAG_DASHBOARD_SCREENSHOT")
    n_good = 16 if screenshot_to else 3
    files = _files(tmp_path / "docs", n_good, paragraphs=6 if screenshot_to else 1)
    n = n_good + 1
    store = JobStore.from_url(s.redis_url)
    if screenshot_to:  # warm the worker's model first so the chart shows steady throughput
        warm = submit_files(files[:1], s.model_copy(update={"index": f"{s.index}-warm"}))
        _wait_final(store, warm, 300)
        store.delete(warm)
    job_id = submit_files(files, s)
    jobs.append(job_id)
    expect = pw.expect
    with serve(create_app(s)) as base, pw.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1360, "height": 1000})
            page.goto(f"{base}/dashboard?key={KEY}")
            assert page.url == f"{base}/dashboard"
            card = page.locator(f'[data-job="{job_id}"]')
            expect(card).to_be_visible(timeout=30_000)

            def k(name: str) -> object:
                return card.locator(f'[data-k="{name}"]')

            # the job runs to the end: one task per file, the random-bytes PDF failed
            expect(k("progress")).to_have_attribute("data-progress", "100", timeout=300_000)
            expect(k("status")).to_have_text("completed with failures")
            for name, value in (("tasks_done", n), ("tasks_failed", 0), ("tasks_total", n),
                                ("files_failed", 1), ("documents", n_good), ("files_total", n)):
                expect(k(name)).to_have_text(f"{value:,}")
            expect(k("failures").locator("li")).to_have_count(1)
            expect(k("failures")).to_contain_text("broken.pdf")
            assert worker.poll() is None
            job = store.get(job_id)
            assert job is not None and job.counters["chunks"] > 0
            expect(k("chunks")).to_have_text(f"{job.counters['chunks']:,}")
            expect(card.locator("[data-chart] rect")).not_to_have_count(0)

            # the worker, its queue and the index with one vector per chunk
            expect(page.locator("tr[data-worker]").filter(has_text=s.queue)).to_have_count(1)
            expect(page.locator(f'tr[data-queue="{s.queue}"] [data-k="ready"]')).to_have_text("0")
            concrete = alias_target(make_client(s), s.index)
            row = page.locator(f"tr[data-index='{concrete}']")
            chunks = f"{job.counters['chunks']:,}"
            expect(row.locator('[data-k="vectors"]')).to_have_text(chunks, timeout=20_000)
            expect(row.locator('[data-k="docs"]')).to_have_text(chunks)

            # retry: the bad file runs again in a new task and fails again
            card.locator('button[data-action="retry"]').click()
            expect(page.locator("#toast")).to_have_text(f"Job {job_id}: requeued 1 task(s)")
            expect(k("tasks_total")).to_have_text(str(n + 1), timeout=20_000)
            expect(k("progress")).to_have_attribute("data-progress", "100", timeout=120_000)
            expect(k("status")).to_have_text("completed with failures")
            for name, value in (("tasks_done", n + 1), ("tasks_failed", 0), ("files_failed", 1),
                                ("documents", n_good)):
                expect(k(name)).to_have_text(f"{value:,}")
            expect(k("failures")).to_contain_text("broken.pdf")
            expect(k("chunks")).to_have_text(f"{job.counters['chunks']:,}")
            expect(card.locator('button[data-action="cancel"]')).to_be_disabled()
            if screenshot_to:  # real traffic for the Queries panel of the docs screenshot
                from esrag.embedder import get_embedder

                get_embedder(s)  # loaded once here, so the first dense query is not timed with it
                _search(base, ["ocean river", "glacier canyon", "volcano island", "meadow"])
                expect(page.locator("tr[data-mode='search:hybrid']")).to_have_count(1, timeout=10_000)
            expect(page.locator("#toast")).to_be_hidden(timeout=10_000)
            page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
            if screenshot_to:
                shutil.copy(tmp_path / "dashboard.png", screenshot_to)

            # cancel: a job on a queue no worker reads stays queued until canceled
            idle = s.model_copy(update={"queue": f"{s.queue}-idle"})
            idle_job = submit_files(files[:1], idle)
            jobs.append(idle_job)
            idle_card = page.locator(f'[data-job="{idle_job}"]')
            expect(idle_card.locator('[data-k="status"]')).to_have_text("queued", timeout=20_000)
            page.once("dialog", lambda dialog: dialog.accept())
            idle_card.locator('button[data-action="cancel"]').click()
            expect(page.locator("#toast")).to_have_text(f"Job {idle_job} canceled")
            expect(idle_card.locator('[data-k="status"]')).to_have_text("canceled", timeout=10_000)
            assert store.status(idle_job) == "canceled"
        finally:
            browser.close()
    assert (tmp_path / "dashboard.png").stat().st_size > 20_000

"""The search workbench in headless Chromium against the real ES: every mode's hits, the leg scores,
the streamed answer, and a citation that opens its passage at the right offsets.

Set ESRAG_WORKBENCH_SCREENSHOT=path to also save the screenshot there (docs/workbench.png).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import pytest
from dashboard_server import serve
from query_corpus import corpus_alias

from server.app import create_app

pw = pytest.importorskip("playwright.sync_api")
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
KEY = "workbench-test-key"
QUESTION = "Are files closed automatically after use?"
CITED = "Files should be closed after use. The with statement closes them automatically, even when an " \
        "exception is raised."


@pytest.fixture(scope="module")
def settings(es):
    with corpus_alias(es) as s:
        yield s.model_copy(update={"api_keys": [KEY]})


def ids(page, col: str) -> list[str]:
    return page.locator(f"#{col} .hit").evaluate_all("els => els.map(e => e.dataset.chunk)")


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium not installed (apt-get install chromium)")
@pytest.mark.timeout(400)
def test_workbench_modes_answer_and_citation(settings, tmp_path: Path):
    expect = pw.expect
    with serve(create_app(settings)) as base, pw.sync_playwright() as p:
        # without a key the page and its API refuse
        assert httpx.get(f"{base}/dashboard/search", timeout=30).status_code == 401
        r = httpx.post(f"{base}/dashboard/api/search/compare", json={"query": "x"}, timeout=30)
        assert r.status_code == 401
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1100})
            page.goto(f"{base}/dashboard?key={KEY}")  # sets the dashboard cookie
            page.goto(f"{base}/dashboard/search")
            expect(page.locator("#index-name")).to_have_text(settings.index)
            page.fill("#q", QUESTION)
            page.select_option("#k", "5")
            page.click("#go")
            expect(page.locator("body")).to_have_attribute("data-state", "done", timeout=300_000)
            expect(page.locator("#banner")).to_be_hidden()

            # each mode's exact hits, as retrieve() ranks them for this corpus
            assert ids(page, "col-bm25") == ["python-files#1", "python-files#0", "secret-notes#0",
                                             "secret-notes#1"]
            assert ids(page, "col-dense")[:4] == ["python-files#1", "secret-notes#1", "postgres-vacuum#0",
                                                  "secret-notes#0"]
            assert ids(page, "col-hybrid")[:4] == ["python-files#1", "secret-notes#1", "secret-notes#0",
                                                   "postgres-vacuum#0"]
            assert ids(page, "col-hybrid-rerank")[:3] == ["python-files#1", "postgres-vacuum#0",
                                                          "secret-notes#1"]
            # a hybrid hit shows both legs; one BM25 never found shows a dash there
            vacuum = page.locator('#col-hybrid .hit[data-chunk="postgres-vacuum#0"] .legs')
            expect(vacuum).to_contain_text("BM25 –")
            expect(vacuum).to_contain_text("dense #3 raw")
            first = page.locator('#col-hybrid .hit[data-chunk="python-files#1"] .legs')
            expect(first).to_contain_text("BM25 #1 raw 12.473")
            expect(page.locator('#col-hybrid-rerank .hit[data-chunk="postgres-vacuum#0"]')).to_contain_text(
                "(hybrid #4)")
            expect(page.locator("#fusion-pill")).to_have_text("fusion dbsf, dense weight 0.8")

            # latency breakdown: every stage has a number
            for stage in ("embed", "Elasticsearch", "fusion", "rerank", "generation"):
                expect(page.locator(f'#timings [data-stage="{stage}"] b')).to_contain_text(" ms")

            # the streamed answer and its citations; the first opens its passage at its offsets
            expect(page.locator("#answer")).to_contain_text("Files should be closed after use. [1]")
            cite = page.locator('#citations a.cite[data-n="1"]')
            expect(cite).to_have_attribute("data-doc", "python-files")
            cite.click()
            mark = page.locator("#doc-text mark#cited")
            expect(mark).to_have_text(CITED)
            expect(mark).to_have_attribute("data-start", "108")
            expect(mark).to_have_attribute("data-end", "221")
            text = page.locator("#doc-text").inner_text()
            assert text[108:221] == CITED
            assert text.startswith("To read a file line by line in Python")

            # marking hits: stored per index in ES, shown on every column's copy of the hit
            page.locator('#col-bm25 .hit[data-chunk="python-files#1"] [data-judge="1"]').click()
            expect(page.locator('#col-hybrid .hit[data-chunk="python-files#1"]')).to_have_class(
                "hit rel", timeout=30_000)
            page.locator('#col-dense .hit[data-chunk="postgres-vacuum#0"] [data-judge="0"]').click()
            expect(page.locator('#col-hybrid .hit[data-chunk="postgres-vacuum#0"]')).to_have_class(
                "hit nonrel", timeout=30_000)
            from esrag.es import make_client
            from query.judgments import list_judgments

            marks = [(j["query"], j["chunk_id"], j["doc_id"], j["relevance"])
                     for j in list_judgments(make_client(settings), settings.index)]
            assert marks == [(QUESTION, "postgres-vacuum#0", "postgres-vacuum", 0),
                             (QUESTION, "python-files#1", "python-files", 1)]
            expect(page.locator("#tuned")).to_have_text("not tuned: mark hits, then run esrag tune")

            # a filter narrows every column
            page.fill("#filters", "doc_id=secret-notes")
            page.uncheck("#answer-on")
            page.click("#go")
            expect(page.locator("body")).to_have_attribute("data-state", "done", timeout=120_000)
            expect(page.locator("#col-bm25 .hit")).to_have_count(2)
            assert sorted(ids(page, "col-hybrid")) == ["secret-notes#0", "secret-notes#1"]

            # a bad filter is one line in the banner, not a broken page
            page.fill("#filters", "text=y")
            page.click("#go")
            expect(page.locator("#banner")).to_contain_text("cannot filter on 'text'", timeout=60_000)

            page.fill("#filters", "")
            page.check("#answer-on")
            page.click("#go")
            expect(page.locator("body")).to_have_attribute("data-state", "done", timeout=120_000)
            # judgments made earlier for this query show when it runs again
            expect(page.locator('#col-bm25 .hit[data-chunk="python-files#1"]')).to_have_class("hit rel")
            page.locator('#citations a.cite[data-n="1"]').click()
            expect(page.locator("#doc-text mark#cited")).to_have_text(CITED)
            page.screenshot(path=str(tmp_path / "workbench.png"), full_page=True)
            shot = os.environ.get("ESRAG_WORKBENCH_SCREENSHOT")
            if shot:
                shutil.copy(tmp_path / "workbench.png", shot)
        finally:
            browser.close()
    assert (tmp_path / "workbench.png").stat().st_size > 20_000

"""`esrag search` and `esrag ask` as a user runs them, against the real Elasticsearch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from query_corpus import corpus_alias

ESRAG = str(Path(sys.executable).parent / "esrag")


@pytest.fixture(scope="module")
def env(es):
    with corpus_alias(es) as settings:
        yield {**os.environ, "ESRAG_INDEX": settings.index}


def run(env, *args):
    return subprocess.run([ESRAG, *args], env=env, capture_output=True, text=True, timeout=280)


def test_search_json_with_filter(env):
    r = run(env, "search", "reading files", "--mode", "bm25", "-k", "50", "--filter", "meta.team=secret",
            "--json")
    assert r.returncode == 0, r.stderr
    hits = json.loads(r.stdout)["hits"]
    assert [h["chunk_id"] for h in hits] == ["secret-notes#0", "secret-notes#1"]


def test_ask_json(env):
    r = run(env, "ask", "What temperature should bread be baked at?", "-k", "3", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["answer"] == "Bake the bread at 220 degrees for thirty minutes until the crust is golden. [1]"
    text = "Bake the bread at 220 degrees for thirty minutes until the crust is golden."
    assert out["citations"] == [{"n": 1, "doc_id": "bread", "chunk_id": "bread#0",
                                 "source": "recipes/bread.txt", "text": text, "start": 0, "end": 75}]
    assert "total_ms" in out["timings_ms"]


def test_user_errors_are_one_line(env):
    r = run(env, "search", "x", "--filter", "text=y")
    assert r.returncode == 1
    assert r.stderr == ("error: cannot filter on 'text': use one of doc_id, source, content_type, chunk_id, "
                        "doc_hash, chunk_hash, model or meta.<key>\n")
    r = run({**env, "ESRAG_INDEX": "test-no-such-alias"}, "search", "x", "--mode", "bm25")
    assert (r.returncode, r.stderr) == (1, "error: index 'test-no-such-alias' does not exist; "
                                           "ingest documents first\n")

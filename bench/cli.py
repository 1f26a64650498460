"""CLI start-up benchmark: wall time of quick commands, and which heavy modules each imports.

Runs each command ``--repeat`` times as a user would (the installed ``esrag`` script, a new
process each time) and records the median and the fastest wall time, plus the heavy
libraries the command imported (from ``python -X importtime``). Commands that talk to a
service (``status``, ``jobs``, ``job``) run against the configured ES and Redis; ``down``
is measured through ``down --help`` only, since running it would stop the shared services.
Writes bench/results/cli.json.

    .venv/bin/python -m bench.cli --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.machine import machine_info

ESRAG = str(Path(sys.executable).parent / "esrag")
HEAVY = ("elasticsearch", "redis", "celery", "torch", "sentence_transformers", "transformers", "rich",
         "pydantic_settings", "fastapi", "numpy")
NAMES = ["up", "down", "status", "ingest", "delete", "reindex", "search", "ask", "serve", "worker", "jobs",
         "job", "eval", "eval-build", "tune", "judgments"]
COMMANDS = [["--help"], *[[n, "--help"] for n in NAMES],
            ["jobs", "--json", "--limit", "5"], ["job", "no-such-job", "--json"], ["status", "--json"]]


def wall(args: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run([ESRAG, *args], capture_output=True, timeout=120)
    return time.perf_counter() - t0


def heavy_imports(args: list[str]) -> list[str]:
    code = "import sys; from esrag.cli import main; sys.exit(main(sys.argv[1:]))"
    r = subprocess.run([sys.executable, "-X", "importtime", "-c", code, *args], capture_output=True,
                       text=True, timeout=120)
    names = {line.split("|")[-1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")}
    return sorted(h for h in HEAVY if h in names)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("bench/results/cli.json"))
    args = ap.parse_args()
    machine = machine_info()
    python_start = [_python_pass() for _ in range(args.repeat)]
    rows = []
    for cmd in COMMANDS:
        wall(cmd)  # warm the page cache
        times = [wall(cmd) for _ in range(args.repeat)]
        rows.append({"command": "esrag " + " ".join(cmd), "median_s": round(statistics.median(times), 3),
                     "min_s": round(min(times), 3), "heavy_imports": heavy_imports(cmd)})
        print(f"{rows[-1]['command']:<40} median {rows[-1]['median_s']:.3f}s  min {rows[-1]['min_s']:.3f}s  "
              f"imports {','.join(rows[-1]['heavy_imports']) or '-'}", flush=True)
    out = {"machine": machine, "repeat": args.repeat,
           "python_no_op_median_s": round(statistics.median(python_start), 3), "commands": rows,
           "load_avg_at_end": [round(x, 2) for x in os.getloadavg()]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


def _python_pass() -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], timeout=60)
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()

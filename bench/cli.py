"""CLI start-up benchmark: wall and CPU time of the quick commands, and what each one imports.

Each command runs ``--repeat`` times as a user runs it (the installed ``esrag`` script, a new
process each time, after one unmeasured run that warms the page cache). Per command:

- ``wall``: spawn to exit; ``ttfb``: spawn to the first byte on stdout (for ``--help``, the
  moment the help is printed);
- ``cpu``: user+sys CPU seconds of the child (``getrusage(RUSAGE_CHILDREN)``). On a loaded
  machine wall time includes waiting for a core; CPU time is what a quiet machine's wall
  time approaches, so both are recorded, beside the same figures for a bare
  ``python -c pass`` and for importing click, typer, pydantic (lazy: ``BaseModel`` is what
  costs), pydantic-settings, the settings, redis and elasticsearch alone;
- for commands that run: CPU and wall from spawn to the entry of the command's function
  (interpreter, Typer, the command modules, Typer's parameter conversion) and to the first
  socket connect (adding the settings and the client library), medians of ``--repeat``
  extra runs through a probe (a wrapper around ``esrag.cli.main`` with an audit hook), and
  ``stages_cpu_s``: the median CPU second at which each stage began (the first import of
  Typer's conversion, pydantic, the settings, redis, urllib; the command; the first
  connect), so the cost of each is the gap to the next; the rest of the run is talking to
  the services;
- ``heavy_imports``: the heavy libraries in ``sys.modules`` at exit of the probe runs.

``status``, ``jobs`` and ``job`` run against the configured ES and Redis; ``down`` runs for
real with an empty temporary ``ESRAG_STATE_DIR``, so it stops nothing. Writes
bench/results/cli.json.

``--baseline DIR`` (a checkout of an earlier commit, e.g. from ``git archive``) also runs the
target commands from that tree and from this one, alternating, both through
``python -c`` with the tree first on ``sys.path``, so the two are compared in one run.

    .venv/bin/python -m bench.cli --repeat 5 [--baseline /tmp/esrag-before]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.machine import machine_info

ESRAG = str(Path(sys.executable).parent / "esrag")
HEAVY = ("elasticsearch", "redis", "celery", "torch", "sentence_transformers", "transformers", "onnxruntime",
         "rich", "pydantic", "pydantic_settings", "fastapi", "numpy")
NAMES = ["up", "down", "status", "ingest", "delete", "reindex", "search", "ask", "chat", "serve", "worker",
         "jobs", "job", "eval", "eval-build", "tune", "keys", "judgments"]
HELP = [["--help"], *[[n, "--help"] for n in NAMES], ["keys", "add", "--help"],
        ["judgments", "export", "--help"]]
RUNS = [["down"], ["jobs", "--json"], ["job", "no-such-job", "--json"], ["status", "--json"]]
TARGETS = [["--help"], ["job", "--help"], ["jobs", "--help"], ["status", "--help"], ["down", "--help"],
           ["down"], ["jobs", "--json"], ["job", "no-such-job", "--json"], ["status", "--json"]]
FROM_TREE = ("import sys; sys.path.insert(0, sys.argv.pop(1)); from esrag.cli import main; "
             "sys.exit(main(sys.argv[1:]))")
REFERENCE = {"python -c pass": "pass", "import click": "import click", "import typer": "import typer",
             "import pydantic": "import pydantic",
             "from pydantic import BaseModel": "from pydantic import BaseModel",
             "import pydantic_settings": "import pydantic_settings",
             "settings loaded": "from esrag.settings import load_settings; load_settings()",
             "import redis": "import redis", "import elasticsearch": "import elasticsearch"}

# Runs `esrag ARGS` as the installed script does, noting the CPU and wall clock at the entry of
# the command's function and at the first socket connect, and the modules loaded at exit.
PROBE = """
import atexit, json, os, sys, time
marks = {}
def mark(name):
    if name not in marks:
        marks[name] = [time.process_time(), time.time()]
STAGES = {"typer._adapters": "typer conversion", "pydantic": "pydantic", "redis": "redis",
          "esrag.settings": "settings", "urllib.request": "urllib"}
def hook(event, args):
    if event == "socket.connect":
        mark("connect")
    elif event == "import" and args[0] in STAGES:
        mark(STAGES[args[0]])
sys.addaudithook(hook)
import typer.main
from esrag import cli
mark("esrag.cli imported")
build = typer.main.get_command
def wrap(command):
    for sub in getattr(command, "commands", {}).values():
        wrap(sub)
    callback = command.callback
    if callback is not None and not getattr(command, "commands", None):
        def entered(*a, **k):
            mark("command")
            return callback(*a, **k)
        command.callback = entered
def get_command(app):
    group = build(app)
    wrap(group)
    return group
typer.main.get_command = get_command
def report():
    with open(os.environ["ESRAG_BENCH_PROBE"], "w") as fh:
        json.dump({"marks": marks, "modules": sorted({m.split(".")[0] for m in sys.modules})}, fh)
atexit.register(report)
sys.exit(cli.main(sys.argv[1:]))
"""


def run_once(argv: list[str], env: dict[str, str]) -> dict[str, float]:
    """Wall, time to first stdout byte and child CPU of one run of ``argv``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    assert proc.stdout is not None
    proc.stdout.read(1)
    ttfb = time.perf_counter() - t0
    proc.stdout.read()
    proc.wait(timeout=120)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall": wall, "ttfb": ttfb, "cpu": cpu}


def measure(argv: list[str], repeat: int, env: dict[str, str]) -> dict[str, float]:
    run_once(argv, env)  # warm the page cache
    runs = [run_once(argv, env) for _ in range(repeat)]
    return {"wall_median_s": _median(r["wall"] for r in runs),
            "wall_min_s": round(min(r["wall"] for r in runs), 3),
            "ttfb_median_s": _median(r["ttfb"] for r in runs),
            "cpu_median_s": _median(r["cpu"] for r in runs)}


def probe(args: list[str], env: dict[str, str], runs: int = 1) -> dict[str, Any]:
    """Start marks and heavy imports of ``runs`` runs of ``esrag ARGS`` through the probe: medians
    of the CPU (and wall, from spawn) at the command's entry and at the first socket connect, and
    ``stages_cpu_s``, the median CPU at which each stage began (its first import or event)."""
    marks: dict[str, list[list[float]]] = {}
    modules: set[str] = set()
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "probe.json"
            started = time.time()
            subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, timeout=120,
                           env={**env, "ESRAG_BENCH_PROBE": str(out)})
            found = json.loads(out.read_text())
        for name, (cpu, at) in found["marks"].items():
            marks.setdefault(name, []).append([cpu, at - started])
        modules |= set(found["modules"])
    row: dict[str, Any] = {}
    for name, key in (("command", "to_command"), ("connect", "to_first_connect")):
        if name in marks:
            row[f"{key}_cpu_s"] = _median(m[0] for m in marks[name])
            row[f"{key}_wall_s"] = _median(m[1] for m in marks[name])
    if runs > 1:
        stages = {name: _median(m[0] for m in ms) for name, ms in marks.items()}
        row["stages_cpu_s"] = dict(sorted(stages.items(), key=lambda kv: kv[1]))
    row["heavy_imports"] = sorted(set(HEAVY) & modules)
    return row


def compare(baseline: Path, repeat: int, env: dict[str, str]) -> list[dict[str, Any]]:
    """The target commands run from ``baseline`` and from this tree, alternating."""
    trees = {"baseline": baseline.resolve(), "this": Path(__file__).resolve().parents[1]}
    rows = []
    for cmd in TARGETS:
        runs: dict[str, list[dict[str, float]]] = {k: [] for k in trees}
        for i in range(repeat + 1):  # the first round warms the page cache
            for name, tree in trees.items():
                r = run_once([sys.executable, "-c", FROM_TREE, str(tree), *cmd], env)
                if i:
                    runs[name].append(r)
        row: dict[str, Any] = {"command": "esrag " + " ".join(cmd)}
        for name, rs in runs.items():
            row[name] = {"wall_median_s": _median(r["wall"] for r in rs),
                         "cpu_median_s": _median(r["cpu"] for r in rs)}
        rows.append(row)
        before, after = row["baseline"], row["this"]
        print(f"{row['command']:<36} cpu {before['cpu_median_s']:.3f}s -> {after['cpu_median_s']:.3f}s  "
              f"wall {before['wall_median_s']:.3f}s -> {after['wall_median_s']:.3f}s", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--baseline", type=Path, help="an earlier source tree to compare the targets with")
    ap.add_argument("--out", type=Path, default=Path("bench/results/cli.json"))
    args = ap.parse_args()
    machine = machine_info()
    with tempfile.TemporaryDirectory() as state:
        env = {**os.environ, "ESRAG_STATE_DIR": state}  # `esrag down` finds nothing of its own to stop
        env.pop("ESRAG_INDEX", None)
        reference = []
        for label, code in REFERENCE.items():
            reference.append({"code": label, **measure([sys.executable, "-c", code], args.repeat, env)})
            _print(label, reference[-1])
        rows = []
        for cmd in [*HELP, *RUNS]:
            runs = 1 if cmd[-1] == "--help" else args.repeat
            row = {"command": "esrag " + " ".join(cmd), **measure([ESRAG, *cmd], args.repeat, env),
                   **probe(cmd, env, runs)}
            if cmd[-1] == "--help":
                row = {k: v for k, v in row.items() if not k.startswith("to_")}
            else:
                row.pop("ttfb_median_s")
            rows.append(row)
            _print(row["command"], row)
        comparison = compare(args.baseline, args.repeat, env) if args.baseline else None
    out = {"machine": machine, "repeat": args.repeat, "reference": reference, "commands": rows,
           **({"baseline": {"tree": str(args.baseline), "commands": comparison}} if comparison else {}),
           "load_avg_at_end": [round(x, 2) for x in os.getloadavg()]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


def _median(values: Any) -> float:
    return round(statistics.median(values), 3)


def _print(label: str, row: dict[str, Any]) -> None:
    start = ""
    if "to_command_cpu_s" in row:
        start = f"  to command cpu {row['to_command_cpu_s']:.3f}s"
    if "to_first_connect_cpu_s" in row:
        start += f"  to connect cpu {row['to_first_connect_cpu_s']:.3f}s"
    print(f"{label:<36} wall {row['wall_median_s']:.3f}s (min {row['wall_min_s']:.3f})  "
          f"cpu {row['cpu_median_s']:.3f}s{start}  imports {','.join(row.get('heavy_imports', [])) or '-'}",
          flush=True)


if __name__ == "__main__":
    main()

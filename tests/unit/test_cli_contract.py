"""The CLI's shape: `--index` wherever an index is read or written, one meaning per flag name,
Click-style usage errors, no heavy imports in quick commands, and the docs/CLI.md table."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from esrag import cli

ROOT = Path(__file__).resolve().parents[2]
INDEX_COMMANDS = ("search", "ask", "chat", "eval", "ingest", "delete", "reindex", "serve", "jobs", "optimize")
HEAVY = ("elasticsearch", "redis", "celery", "torch", "sentence_transformers", "transformers", "numpy",
         "fastapi")


@pytest.fixture(scope="module")
def commands() -> dict:
    cli._register_plugins(cli.app)
    group = typer.main.get_command(cli.app)
    return dict(group.commands)


def options(command) -> dict[str, object]:
    return {opt: p for p in command.params if hasattr(p, "is_flag")
            for opt in (*p.opts, *p.secondary_opts)}


def test_every_index_command_takes_index(commands):
    for name in INDEX_COMMANDS:
        opt = options(commands[name]).get("--index")
        assert opt is not None, f"esrag {name} has no --index"
        assert opt.name == "index" and not opt.is_flag and opt.default is None, name
        assert "index alias" in opt.help, (name, opt.help)


def test_same_flag_same_meaning(commands):
    seen: dict[str, set] = {}
    for command in commands.values():
        for flag, p in options(command).items():
            seen.setdefault(flag, set()).add((p.name, p.is_flag, str(p.bare_type())))
    for flag in ("--json", "--index", "-k", "--filter", "--mode", "--rerank", "--limit"):
        assert len(seen[flag]) == 1, (flag, seen[flag])
    assert seen["--json"] == {("as_json", True, "bool")}


def run_main(*args: str) -> subprocess.CompletedProcess:
    code = ("import json, sys\nfrom esrag.cli import main\nrc = main(sys.argv[1:])\n"
            "print('MODULES=' + json.dumps(sorted(sys.modules)), file=sys.stderr)\nsys.exit(rc)")
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60,
                          cwd=ROOT)


def loaded(r: subprocess.CompletedProcess) -> set[str]:
    line = [x for x in r.stderr.splitlines() if x.startswith("MODULES=")][-1]
    return {m.split(".")[0] for m in json.loads(line[len("MODULES="):])}


# pydantic: Typer builds a pydantic TypeAdapter for any parameter it converts, and a group's own
# --help flag used to be converted (value None) on every `esrag CMD --help` (esrag/cligroup.py)
NOT_FOR_HELP = {*HEAVY, "rich", "pydantic", "pydantic_core", "pydantic_settings"}


@pytest.mark.parametrize("args", [["--help"], ["status", "--help"], ["job", "--help"], ["jobs", "--help"],
                                  ["down", "--help"], ["search", "--help"], ["ingest", "--help"],
                                  ["eval", "--help"], ["reindex", "--help"], ["serve", "--help"],
                                  ["keys", "add", "--help"], ["judgments", "export", "--help"]])
def test_help_imports_no_heavy_library(args):
    r = run_main(*args)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"Usage: esrag {' '.join(args[:-1])}".rstrip() + " [OPTIONS]")
    assert loaded(r) & NOT_FOR_HELP == set()


def test_no_help_of_any_command_imports_pydantic_or_a_client():
    """Every command and subcommand (those added later too) in one process, in turn: the
    modules each one's --help added to the process."""
    code = ("import json, sys\nfrom esrag import cli\nimport typer\ncli._register_plugins(cli.app)\n"
            "def paths(cmd, path):\n    yield path\n"
            "    for name, sub in sorted(getattr(cmd, 'commands', {}).items()):\n"
            "        yield from paths(sub, [*path, name])\n"
            "added = {}\n"
            "for path in paths(typer.main.get_command(cli.app), []):\n"
            "    before = set(sys.modules)\n"
            "    cli.app(args=[*path, '--help'], prog_name='esrag', standalone_mode=False)\n"
            "    added[' '.join(path)] = sorted({m.split('.')[0] for m in set(sys.modules) - before})\n"
            "print('ADDED=' + json.dumps(added), file=sys.stderr)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    added = json.loads(r.stderr.rpartition("ADDED=")[2])
    assert {"", "job", "jobs", "status", "down", "keys", "keys add", "keys revoke", "judgments",
            "judgments export", "judgments list"} <= set(added)
    assert r.stdout.count("Usage: esrag") == len(added)
    assert {path: sorted(set(mods) & NOT_FOR_HELP) for path, mods in added.items()
            if set(mods) & NOT_FOR_HELP} == {}


def test_down_stops_by_pid_without_client_libraries(tmp_path):
    """`esrag down` with nothing started in its state folder: the three messages, and neither the
    Elasticsearch nor the Redis client imported (it stops processes by their pid files)."""
    code = ("import json, os, sys\nfrom pathlib import Path\nfrom esrag.settings import load_settings\n"
            "assert load_settings().state_dir == Path(os.environ['ESRAG_STATE_DIR'])  # not the shared one\n"
            "from esrag.cli import main\nrc = main(['down'])\n"
            "print('MODULES=' + json.dumps(sorted(sys.modules)), file=sys.stderr)\nsys.exit(rc)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT,
                       env={**os.environ, "ESRAG_STATE_DIR": str(tmp_path)})
    assert (r.returncode, r.stdout) == (0, "no background worker\nElasticsearch was not running\n"
                                           "Redis (started by esrag) was not running\n"), r.stderr
    assert loaded(r) & {*HEAVY, "rich"} == set()


def test_usage_error_is_usage_line_and_one_sentence():
    r = run_main("search", "reading files", "--bogus")
    assert r.returncode == 2
    assert r.stderr.split("MODULES=")[0] == (
        "Usage: esrag search [OPTIONS] {query}\nTry 'esrag search --help' for help.\n\n"
        "Error: No such option: --bogus\n")
    r = subprocess.run([str(Path(sys.executable).parent / "esrag"), "ask"], capture_output=True, text=True,
                       timeout=60)
    assert (r.returncode, r.stderr) == (2, "Usage: esrag ask [OPTIONS] {question}\n"
                                           "Try 'esrag ask --help' for help.\n\n"
                                           "Error: Missing argument 'question'.\n")


def test_bad_index_name_is_one_line():
    r = run_main("search", "x", "--index", "Bad Name")
    assert r.returncode == 2
    assert r.stderr.split("MODULES=")[0] == (
        "error: invalid setting ESRAG_INDEX: String should match pattern '^[a-z0-9][a-z0-9_\\-]*$'\n")


def test_cli_table_in_docs_lists_every_command_and_flag(commands):
    doc = (ROOT / "docs" / "CLI.md").read_text()
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `esrag ([a-z\-]+)` \| ([^|]*) \|", doc, re.M)}
    assert set(rows) == set(commands)
    for name, command in commands.items():
        flags = {p.opts[0] for p in command.params if p.opts[0].startswith("-") and p.opts[0] != "--help"}
        documented = set(re.findall(r"`(-[-a-z]+|-k)", rows[name]))
        assert flags <= documented, (name, flags - documented)

"""Imports run one way between esrag's packages, and no package has an import cycle.

The graph is grimp's: every import statement of every module, at module level or inside a
function or an ``if TYPE_CHECKING:`` block. The allowed arrows are the package graph of
docs/ARCHITECTURE.md; bench/ and tests/ sit outside it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("esrag", "ingest", "workers", "query", "dashboard", "server")
# package -> the packages its modules may import (besides its own)
ALLOWED: dict[str, frozenset[str]] = {
    "esrag": frozenset(),
    "ingest": frozenset({"esrag"}),
    "workers": frozenset({"esrag", "ingest"}),
    "query": frozenset({"esrag"}),
    "dashboard": frozenset({"esrag", "ingest", "workers", "query"}),
    "server": frozenset({"esrag", "ingest", "workers", "query", "dashboard"}),
}
# sub-package -> further packages it may import: `esrag eval` indexes its eval set with the
# ingest pipeline (query/eval/runner.py); the rest of query/ never reads files or writes chunks.
ALLOWED_BELOW: dict[str, frozenset[str]] = {"query.eval": frozenset({"ingest"})}


def _top(module: str) -> str:
    return module.split(".")[0]


def _allowed(importer: str, imported: str) -> bool:
    target = _top(imported)
    if target == _top(importer) or target in ALLOWED[_top(importer)]:
        return True
    return any((importer == below or importer.startswith(below + ".")) and target in extra
               for below, extra in ALLOWED_BELOW.items())


def wrong_arrows(graph: grimp.ImportGraph) -> list[str]:
    """``importer -> imported (line n)`` for every import that is not an allowed arrow."""
    found = []
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            if not _allowed(importer, imported):
                lines = [d["line_number"] for d in graph.get_import_details(importer=importer,
                                                                            imported=imported)]
                found.append(f"{importer} -> {imported} (line {', '.join(map(str, lines)) or '?'})")
    return found


def cycles(graph: grimp.ImportGraph, package: str) -> list[str]:
    """Every import cycle through the modules of ``package``, once each (``a -> b -> a``)."""
    found: dict[frozenset[str], str] = {}
    for importer in sorted(m for m in graph.modules if _top(m) == package):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            back = graph.find_shortest_chain(importer=imported, imported=importer) \
                if _top(imported) == package else None
            if back:
                loop = (importer, *back)
                found.setdefault(frozenset(loop), " -> ".join(loop))
    return sorted(found.values())


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(*PACKAGES, cache_dir=None)


def test_every_package_is_in_the_graph(graph):
    assert {_top(m) for m in graph.modules} == set(PACKAGES)
    assert {"server.app", "query.hits", "query.api.app", "dashboard.querylog"} <= graph.modules


def test_imports_point_one_way(graph):
    assert wrong_arrows(graph) == []


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycle_within_a_package(graph, package):
    assert cycles(graph, package) == []


def test_the_checks_catch_a_wrong_arrow_and_a_cycle():
    """The two arrows issue #19 found: query composing the server, and rerank <-> retrieval."""
    graph = grimp.ImportGraph()
    for module in ("query", "query.api.app", "query.rerank", "query.retrieval", "query.eval.runner",
                   "workers", "workers.api", "ingest", "ingest.pipeline", "server", "server.app"):
        graph.add_module(module)
    graph.add_import(importer="query.api.app", imported="workers.api", line_number=67,
                     line_contents="from workers.api import make_jobs_router")
    graph.add_import(importer="query.eval.runner", imported="ingest.pipeline")
    graph.add_import(importer="server.app", imported="query.api.app")
    graph.add_import(importer="query.rerank", imported="query.retrieval")
    graph.add_import(importer="query.retrieval", imported="query.rerank")
    assert wrong_arrows(graph) == ["query.api.app -> workers.api (line 67)"]
    assert cycles(graph, "query") == ["query.rerank -> query.retrieval -> query.rerank"]
    assert cycles(graph, "server") == []


def test_the_query_api_loads_neither_workers_nor_dashboard_nor_celery():
    """Building the query API alone (what a query-only process would serve) imports nothing of
    the packages above query/ and no Celery; the server's app does."""
    code = ("import json, sys\nfrom esrag.settings import load_settings\n"
            "from query.api.app import create_app\ncreate_app(load_settings())\n"
            "before = sorted({m.split('.')[0] for m in sys.modules})\n"
            "from server.app import create_app\ncreate_app(load_settings())\n"
            "after = sorted({m.split('.')[0] for m in sys.modules})\nprint(json.dumps([before, after]))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    before, after = map(set, json.loads(r.stdout.splitlines()[-1]))
    above = {"workers", "dashboard", "server", "celery", "kombu"}
    assert before & above == set()
    assert above <= after

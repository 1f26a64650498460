"""The worker's expansion of an HTTP job's sources (workers/expand.py collect) and the lazy
folder walk under it (ingest/sources.py iter_paths), on a temporary folder tree."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ingest.sources import expand_paths, iter_paths, walk_folder
from workers.expand import collect, outermost, over_cap_message, vanished_message


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    for rel in ["b.txt", "a/z.md", "a/b/c.txt", "a-b/x.txt", "a.txt", ".hidden/h.txt", "a/.h.txt",
                "a/skip.bin"]:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rel)
    return root


def test_walk_is_lazy_and_in_sorted_path_order(tree: Path) -> None:
    walk = walk_folder(tree)
    assert next(walk) == tree / "a" / "b" / "c.txt"  # a generator: nothing listed past it yet
    rest = list(walk)
    expected = sorted(p for p in tree.rglob("*") if p.is_file() and p.suffix in (".txt", ".md")
                      and not any(part.startswith(".") for part in p.relative_to(tree).parts))
    assert [tree / "a" / "b" / "c.txt", *rest] == expected
    assert [str(p.relative_to(tree)) for p in expected] == ["a/b/c.txt", "a/z.md", "a-b/x.txt", "a.txt",
                                                            "b.txt"]


def test_iter_paths_skips_repeats_across_calls_with_one_seen_set(tree: Path) -> None:
    seen: set[Path] = set()
    first = list(iter_paths([str(tree / "a")], seen))
    again = list(iter_paths([str(tree / "a" / "z.md"), str(tree / "b.txt")], seen))
    assert (len(first), again) == (2, [tree / "b.txt"])
    assert expand_paths([str(tree), str(tree / "a.txt")], None) == [  # type: ignore[arg-type]
        tree / "a" / "b" / "c.txt", tree / "a" / "z.md", tree / "a-b" / "x.txt", tree / "a.txt",
        tree / "b.txt"]


def test_collect_holds_at_most_the_cap_and_counts_on(tree: Path) -> None:
    got = collect([str(tree)], cap=2)
    assert (got.files, got.count, got.failures) == ([tree / "a" / "b" / "c.txt", tree / "a" / "z.md"], 5, {})
    assert over_cap_message(got.count, 2) == ("the paths expand to 5 files, over ESRAG_INGEST_MAX_FILES "
                                              "(2); nothing was ingested; submit fewer")
    whole = collect([str(tree)], cap=5)
    assert (len(whole.files), whole.count) == (5, 5)


def test_collect_drops_sources_inside_another_and_fails_a_vanished_one(tree: Path) -> None:
    gone = str(tree / "gone")
    sources = [str(tree / "a" / "z.md"), str(tree / "a"), str(tree / "a" / "b"), gone, str(tree / "b.txt")]
    assert outermost(sources) == [str(tree / "a"), gone, str(tree / "b.txt")]
    got = collect(sources, cap=10)
    assert got.files == [tree / "a" / "b" / "c.txt", tree / "a" / "z.md", tree / "b.txt"]
    assert (got.count, got.failures) == (3, {gone: vanished_message(gone)})
    assert vanished_message(gone) == (f"{gone} no longer exists (removed after the job was submitted); "
                                      "not read")


def test_collect_counts_a_linked_file_once_below_the_cap(tree: Path) -> None:
    os.symlink(tree / "b.txt", tree / "a" / "link.txt")
    assert collect([str(tree)], cap=10).count == 5  # link.txt and b.txt are one file

"""The eval-set builders are deterministic and write BEIR layout that load_dataset reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from query.eval import beir, chatterbot, pyfaq
from query.eval.cli import build_dataset

DOCS = pyfaq.DEFAULT_DOCS


@pytest.mark.skipif(not (DOCS / "faq").is_dir(), reason="python3.11-doc is not installed")
def test_python_faq_small_slice_is_deterministic(tmp_path: Path):
    a = build_dataset("python-faq", tmp_path / "a", small=True)
    b = build_dataset("python-faq", tmp_path / "b", small=True)
    assert a == b and a["queries"] == a["qrels"] and a["documents"] <= 300
    for name in ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    ds = beir.load_dataset(tmp_path / "a")
    assert ds.queries["faq/general.html#what-is-python"] == "What is Python?"
    assert ds.qrels["faq/general.html#what-is-python"] == {"faq/general.html#what-is-python": 1}
    assert len(ds.answers) == len(ds.queries) == 22
    (ref,) = ds.answers["faq/general.html#what-is-python"]
    assert ref.startswith("Python is an interpreted, interactive, object-oriented programming language.")


@pytest.mark.skipif(not (DOCS / "faq").is_dir(), reason="python3.11-doc is not installed")
def test_python_faq_answer_sections_hide_the_question():
    secs = {s.doc_id: s for s in pyfaq.page_sections(DOCS, DOCS / "faq" / "general.html")}
    sec = secs["faq/general.html#what-is-python"]
    assert sec.level == 3 and sec.heading == "What is Python?"
    assert sec.title == "General Python FAQ: General Information"
    assert sec.text.startswith("Python is an interpreted, interactive, object-oriented programming language.")
    assert "What is Python?" not in sec.text


def test_chatterbot_groups_answers_per_question(tmp_path: Path):
    (tmp_path / "t.yml").write_text(
        "categories: [t]\nconversations:\n"
        "- - What is AI?\n  - A branch of science.\n"
        "- - what is AI\n  - Machines that think.\n"
        "- - Hello\n  - Hi\n  - How are you?\n"
    )
    corpus, queries, qrels = chatterbot.build(tmp_path)
    texts = {q["text"]: q["metadata"]["answers"] for q in queries}
    assert texts == {
        "What is AI?": ["A branch of science.", "Machines that think."],
        "Hello": ["Hi"], "Hi": ["How are you?"],
    }
    assert sorted(d["text"] for d in corpus) == [
        "A branch of science.", "Hi", "How are you?", "Machines that think.",
    ]
    assert len(qrels) == 4


def test_chatterbot_package_small_slice(tmp_path: Path):
    a = build_dataset("chatterbot", tmp_path / "a", small=True)
    b = build_dataset("chatterbot", tmp_path / "b", small=True)
    assert a == b == {"documents": 250, "queries": 40, "qrels": a["qrels"]}
    assert (tmp_path / "a" / "corpus.jsonl").read_bytes() == (tmp_path / "b" / "corpus.jsonl").read_bytes()
    ds = beir.load_dataset(tmp_path / "a")
    assert len(ds.answers) == 40

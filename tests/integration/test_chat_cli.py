"""`esrag chat` as a script runs it: one question per input line, one JSON answer per line."""

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


def chat(env, text, *args):
    return subprocess.run([ESRAG, "chat", "--json", "-k", "1", *args], input=text, env=env,
                          capture_output=True, text=True, timeout=560)


@pytest.mark.timeout(600)  # one process loads the models and answers three turns
def test_chat_keeps_the_history_and_rewrites_follow_ups(env):
    r = chat(env, "What does VACUUM do in PostgreSQL?\nHow often should I run it?\n/reset\n"
                  "How often should I run it?\n")
    assert r.returncode == 0, r.stderr
    turns = [json.loads(line) for line in r.stdout.splitlines()]
    assert [(t["query"], t["rewrite"]) for t in turns] == [
        ("What does VACUUM do in PostgreSQL?", "none"),
        ("What does VACUUM do in PostgreSQL? How often should I run it?", "rules"),
        ("How often should I run it?", "none"),  # after /reset there is no history to lean on
    ]
    assert [c["doc_id"] for c in turns[1]["citations"]] == ["postgres-vacuum"]
    assert [c["doc_id"] for c in turns[2]["citations"]] != ["postgres-vacuum"]


def test_chat_bad_setting_is_one_line(env):
    r = subprocess.run([ESRAG, "chat"], input="q?\n", env={**env, "ESRAG_CHAT_MAX_MESSAGES": "0"},
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and r.stderr.strip().splitlines() == [
        "error: invalid setting ESRAG_CHAT_MAX_MESSAGES: Input should be greater than or equal to 1"]

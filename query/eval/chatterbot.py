"""Build the chatterbot eval set from the English YAML files of the chatterbot-corpus package.

Each consecutive (statement, response) pair of a conversation is a question and its answer.
Questions are grouped by their normalised text; every distinct answer text is one corpus
document, relevant to each question it answers. Queries carry the reference answers in
``metadata.answers`` for answer-quality metrics.
"""

from __future__ import annotations

import hashlib
import importlib.util
import random
import re
from pathlib import Path

import yaml

from esrag.errors import EsragError


def data_dir(language: str = "english") -> Path:
    """The installed chatterbot-corpus folder of one language."""
    spec = importlib.util.find_spec("chatterbot_corpus")
    if spec is None or spec.origin is None:
        raise EsragError("the chatterbot eval set needs the Python package chatterbot-corpus")
    path = Path(spec.origin).parent / "data" / language
    if not path.is_dir():
        raise EsragError(f"chatterbot-corpus has no {language} data at {path}")
    return path


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _key(text: str) -> str:
    return re.sub(r"[^\w ]+", "", _norm(text).lower()).strip()


def _hid(prefix: str, text: str) -> str:
    return f"{prefix}-{hashlib.sha1(text.encode('utf-8')).hexdigest()[:12]}"


def pairs(folder: Path) -> list[tuple[str, str, str]]:
    """(file stem, question, answer) for every consecutive pair, files in sorted order."""
    out: list[tuple[str, str, str]] = []
    for path in sorted(folder.glob("*.yml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for conv in data.get("conversations") or []:
            if not isinstance(conv, list):
                continue
            turns = [_norm(t) for t in conv if isinstance(t, str) and _norm(t)]
            for q, a in zip(turns, turns[1:], strict=False):
                out.append((path.stem, q, a))
    return out


Built = tuple[list[dict], list[dict], list[tuple[str, str, int]]]


def build(folder: Path | None = None, *, small: bool = False, sample_queries: int = 40,
          sample_docs: int = 250, seed: int = 13) -> Built:
    """Corpus, queries and qrels; ``small`` keeps a seeded sample of queries and documents."""
    found = pairs(folder or data_dir())
    if not found:
        raise EsragError("no conversations found in the chatterbot corpus")
    questions: dict[str, dict] = {}
    docs: dict[str, dict] = {}
    for topic, q, a in found:
        did = _hid("a", a)
        docs.setdefault(did, {"_id": did, "title": topic, "text": a})
        key = _key(q) or q
        entry = questions.setdefault(key, {"_id": _hid("q", key), "text": q, "answers": {}})
        entry["answers"].setdefault(did, a)
    qlist = sorted(questions.values(), key=lambda e: e["_id"])
    if small:
        rng = random.Random(seed)
        qlist = sorted(rng.sample(qlist, min(sample_queries, len(qlist))), key=lambda e: e["_id"])
        keep = {did for e in qlist for did in e["answers"]}
        rest = sorted(set(docs) - keep)
        keep |= set(rng.sample(rest, max(0, min(sample_docs - len(keep), len(rest)))))
        docs = {d: docs[d] for d in keep}
    queries = [
        {"_id": e["_id"], "text": e["text"], "metadata": {"answers": list(e["answers"].values())}}
        for e in qlist
    ]
    qrels = [(e["_id"], did, 1) for e in qlist for did in sorted(e["answers"])]
    return [docs[d] for d in sorted(docs)], queries, qrels

"""Reading and writing BEIR-layout eval sets: corpus.jsonl, queries.jsonl, qrels/test.tsv."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from esrag.errors import EsragError


@dataclass
class Dataset:
    """An eval set: queries (id -> text), graded judgements, optional reference answers."""

    name: str
    path: Path
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    answers: dict[str, list[str]] = field(default_factory=dict)

    @property
    def corpus_path(self) -> Path:
        """The corpus.jsonl that gets ingested."""
        return self.path / "corpus.jsonl"


def dataset_name(path: Path) -> str:
    """An index-safe name for the folder: lower case, [a-z0-9_-] only."""
    name = re.sub(r"[^a-z0-9_\-]+", "-", path.resolve().name.lower()).strip("-_")
    return name or "dataset"


def _need(path: Path) -> Path:
    if not path.is_file():
        raise EsragError(f"not a BEIR dataset: {path} is missing")
    return path


def _read_jsonl(path: Path) -> Iterable[tuple[int, dict]]:
    with path.open(encoding="utf-8") as fh:
        for no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise EsragError(f"{path}:{no}: invalid JSON ({exc.msg})") from None
            if not isinstance(obj, dict):
                raise EsragError(f"{path}:{no}: expected a JSON object")
            yield no, obj


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """qrels/test.tsv (header ``query-id corpus-id score``) as query -> doc -> grade."""
    qrels: dict[str, dict[str, int]] = {}
    with _need(path).open(encoding="utf-8", newline="") as fh:
        rows = csv.reader(fh, delimiter="\t")
        header = next(rows, None)
        if header is None or [h.strip() for h in header[:3]] != ["query-id", "corpus-id", "score"]:
            raise EsragError(f"{path}: first line must be the header query-id<TAB>corpus-id<TAB>score")
        for no, row in enumerate(rows, 2):
            if not row or not "".join(row).strip():
                continue
            if len(row) < 3:
                raise EsragError(f"{path}:{no}: expected 3 tab-separated columns")
            try:
                grade = int(float(row[2]))
            except ValueError:
                raise EsragError(f"{path}:{no}: score {row[2]!r} is not a number") from None
            qrels.setdefault(row[0], {})[row[1]] = grade
    return qrels


def load_dataset(path: Path, *, limit: int | None = None) -> Dataset:
    """Load queries and qrels of a BEIR folder; only queries with a judgement are kept."""
    if not path.is_dir():
        raise EsragError(f"dataset folder {path} does not exist")
    _need(path / "corpus.jsonl")
    qrels = read_qrels(path / "qrels" / "test.tsv")
    queries: dict[str, str] = {}
    answers: dict[str, list[str]] = {}
    qpath = _need(path / "queries.jsonl")
    for no, obj in _read_jsonl(qpath):
        qid, text = obj.get("_id", obj.get("id")), obj.get("text")
        if qid is None or not isinstance(text, str):
            raise EsragError(f"{qpath}:{no}: a query needs \"_id\" and \"text\"")
        qid = str(qid)
        if qid in qrels and any(g > 0 for g in qrels[qid].values()):
            queries[qid] = text
            refs = (obj.get("metadata") or {}).get("answers")
            if isinstance(refs, list) and refs:
                answers[qid] = [str(r) for r in refs]
    if not queries:
        raise EsragError(f"{path}: no query in queries.jsonl has a relevant document in qrels/test.tsv")
    ids = sorted(queries)[:limit] if limit else sorted(queries)
    return Dataset(
        name=dataset_name(path), path=path,
        queries={q: queries[q] for q in ids},
        qrels={q: qrels[q] for q in ids},
        answers={q: answers[q] for q in ids if q in answers},
    )


def write_dataset(
    out: Path, corpus: Iterable[dict], queries: Iterable[dict], qrels: Iterable[tuple[str, str, int]],
) -> dict[str, int]:
    """Write a BEIR folder (one JSON object per line, sorted keys); returns the counts."""
    (out / "qrels").mkdir(parents=True, exist_ok=True)
    counts = {"documents": 0, "queries": 0, "qrels": 0}
    with (out / "corpus.jsonl").open("w", encoding="utf-8") as fh:
        for doc in corpus:
            fh.write(json.dumps(doc, ensure_ascii=False, sort_keys=True) + "\n")
            counts["documents"] += 1
    with (out / "queries.jsonl").open("w", encoding="utf-8") as fh:
        for q in queries:
            fh.write(json.dumps(q, ensure_ascii=False, sort_keys=True) + "\n")
            counts["queries"] += 1
    with (out / "qrels" / "test.tsv").open("w", encoding="utf-8") as fh:
        fh.write("query-id\tcorpus-id\tscore\n")
        for qid, did, grade in qrels:
            fh.write(f"{qid}\t{did}\t{grade}\n")
            counts["qrels"] += 1
    return counts

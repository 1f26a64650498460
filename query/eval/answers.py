"""Answer quality on sets with reference answers: token F1, citation share, citation precision."""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

ARTICLES = re.compile(r"\b(a|an|the)\b")
PUNCT = str.maketrans("", "", string.punctuation + "“”‘’")


def normalize_tokens(text: str) -> list[str]:
    """SQuAD-style normalisation: lower case, no punctuation or articles, split on whitespace."""
    return ARTICLES.sub(" ", text.lower().translate(PUNCT)).split()


def token_f1(prediction: str, reference: str) -> float:
    """Token-overlap F1 of two texts (1.0 when both are empty)."""
    pred, ref = normalize_tokens(prediction), normalize_tokens(reference)
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def best_f1(prediction: str, references: Sequence[str]) -> float:
    """The best F1 against any of the acceptable reference answers."""
    return max((token_f1(prediction, r) for r in references), default=0.0)


def answer_quality(
    questions: Mapping[str, str],
    references: Mapping[str, Sequence[str]],
    qrels: Mapping[str, Mapping[str, int]],
    answer_fn: Callable[[str], Mapping[str, Any]],
) -> dict[str, float]:
    """Mean token F1, share of answers with a citation, and precision of the cited documents.

    ``answer_fn(question)`` returns ``{"answer": str, "citations": [{"doc_id": ...}, ...]}``;
    a citation is correct when its document is judged relevant for the question.
    """
    f1s: list[float] = []
    cited = 0
    correct = total = 0
    for qid, refs in references.items():
        out = answer_fn(questions[qid])
        f1s.append(best_f1(str(out.get("answer") or ""), refs))
        cites = list(out.get("citations") or [])
        if cites:
            cited += 1
        relevant = {d for d, g in qrels.get(qid, {}).items() if g > 0}
        for c in cites:
            total += 1
            correct += str(c.get("doc_id")) in relevant
    n = len(f1s)
    return {
        "answers": n,
        "token_f1": round(sum(f1s) / n, 4) if n else 0.0,
        "cited_share": round(cited / n, 4) if n else 0.0,
        "citation_precision": round(correct / total, 4) if total else 0.0,
    }

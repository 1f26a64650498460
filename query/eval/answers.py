"""Answer quality on sets with reference answers: token F1, citation share, citation precision."""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any

from query.eval.metrics import p50

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


def rouge_l(prediction: str, references: Sequence[str]) -> float:
    """Best ROUGE-L F-measure (Porter-stemmed) against any reference (Google's rouge-score)."""
    from rouge_score import rouge_scorer

    scorer = _rouge_scorer(rouge_scorer)
    return max((scorer.score(r, prediction)["rougeL"].fmeasure for r in references), default=0.0)


@lru_cache(maxsize=1)
def _rouge_scorer(module: Any) -> Any:
    return module.RougeScorer(["rougeL"], use_stemmer=True)


def answer_quality(
    questions: Mapping[str, str],
    references: Mapping[str, Sequence[str]],
    qrels: Mapping[str, Mapping[str, int]],
    answer_fn: Callable[[str], Mapping[str, Any]],
    similarity_fn: Callable[[str, Sequence[str]], float] | None = None,
    *,
    extended: bool = False,
    progress: Callable[[str], None] | None = None,
) -> dict[str, float]:
    """Mean token F1, share of answers with a citation, and precision of the cited documents.

    ``answer_fn(question)`` returns ``{"answer": str, "citations": [{"doc_id": ...}, ...]}``;
    a citation is correct when its document is judged relevant for the question.
    With ``extended``: ROUGE-L, ``similarity_fn(answer, references)`` (the best cosine to a
    reference), faithfulness (mean over answers that make a claim), the share of declined
    answers, unsupported citations dropped, citations attributed to uncited sentences, and p50
    prompt tokens, time to first token and total.
    """
    from query.citations import NOT_FOUND

    f1s: list[float] = []
    rouges: list[float] = []
    sims: list[float] = []
    faiths: list[float] = []
    prompt: list[float] = []
    ttft: list[float] = []
    total_ms: list[float] = []
    cited = declined = unsupported = attributed = 0
    correct = total = 0
    for i, (qid, refs) in enumerate(references.items(), start=1):
        out = answer_fn(questions[qid])
        text = str(out.get("answer") or "")
        f1s.append(best_f1(text, refs))
        cites = list(out.get("citations") or [])
        if cites:
            cited += 1
        relevant = {d for d, g in qrels.get(qid, {}).items() if g > 0}
        for c in cites:
            total += 1
            correct += str(c.get("doc_id")) in relevant
        if extended:
            rouges.append(rouge_l(text, refs))
            if similarity_fn is not None:
                sims.append(similarity_fn(text, refs))
            if out.get("faithfulness") is not None:
                faiths.append(float(out["faithfulness"]))
            declined += text == NOT_FOUND
            unsupported += int(out.get("unsupported_citations") or 0)
            attributed += int(out.get("attributed_citations") or 0)
            timings = out.get("timings_ms") or {}
            for key, acc in (("prompt_tokens", prompt), ("first_token_ms", ttft), ("total_ms", total_ms)):
                if key in timings:
                    acc.append(float(timings[key]))
        if progress and i % 10 == 0:
            progress(f"answers: {i}/{len(references)}")
    n = len(f1s)
    result = {
        "answers": n,
        "token_f1": round(sum(f1s) / n, 4) if n else 0.0,
        "cited_share": round(cited / n, 4) if n else 0.0,
        "citation_precision": round(correct / total, 4) if total else 0.0,
    }
    if extended:
        def mean(xs: list[float]) -> float | None:
            return round(sum(xs) / len(xs), 4) if xs else None

        result.update({
            "rouge_l": mean(rouges), "answer_similarity": mean(sims), "faithfulness": mean(faiths),
            "declined_share": round(declined / n, 4) if n else 0.0, "unsupported_citations": unsupported,
            "attributed_citations": attributed,
            "p50_prompt_tokens": p50(prompt) if prompt else None,
            "p50_first_token_ms": p50(ttft) if ttft else None,
            "p50_total_ms": p50(total_ms) if total_ms else None,
        })
    return result

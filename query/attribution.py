"""Post-hoc attribution: an answer sentence the model left without [n] gets the citation of the
prompt passage that best supports it, measured as the citation check measures support.

A sentence no passage supports (below the check's threshold) stays uncited, and the check then
treats it as an unsupported claim. Sentences that already cite something are left alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from query.citations import NOT_FOUND
from query.verify import cite_at_end, cited_numbers, claim_text, sentence_spans, states_something


@dataclass
class Attributed:
    """An answer after attribution: its text and how many sentences got a citation appended."""

    answer: str
    added: int


def best_passage(claim: str, passages: Sequence[str], support: Callable[[str, str], float],
                 min_support: float) -> int | None:
    """The 1-based number of the passage that supports ``claim`` most (the lowest on ties),
    or None when none reaches ``min_support``."""
    best, best_score = None, min_support
    for n, passage in enumerate(passages, start=1):
        score = support(claim, passage)
        if score >= best_score and (best is None or score > best_score):
            best, best_score = n, score
    return best


def attribute_citations(answer: str, passages: Sequence[str], support: Callable[[str, str], float],
                        min_support: float) -> Attributed:
    """Append ``[n]`` to each uncited sentence of ``answer`` that passage n supports best."""
    out: list[str] = []
    pos = added = 0
    for start, end in sentence_spans(answer):
        sentence = answer[start:end]
        claim = claim_text(sentence)
        n = None
        if states_something(claim) and claim != NOT_FOUND and not cited_numbers(sentence):
            n = best_passage(claim, passages, support, min_support)
        if n is not None:
            sentence = cite_at_end(sentence, f"[{n}]")
            added += 1
        out.append(answer[pos:start] + sentence)
        pos = end
    out.append(answer[pos:])
    return Attributed(answer="".join(out), added=added)

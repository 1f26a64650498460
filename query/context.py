"""The passages a prompt gets: navigation dropped, overlapping chunks merged, packed best first by tokens."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace

from query.hits import Hit

# A line that ends a sentence (not a heading or a link text).
_SENTENCE_END = re.compile(r"[.!:;](?:[\"')\]]*)$")
NAV_MIN_LINES = 4
NAV_SHORT_WORDS = 12
NAV_SHORT_SHARE = 0.7
NAV_MAX_SENTENCE_SHARE = 0.2
NAV_WORDY_SHARE = 0.85
_TITLE_START = re.compile(r"[A-Z0-9]")


def _heading_like(line: str) -> bool:
    """Short, starts like a title, no sentence end, and (nearly) only words: not a line of code."""
    if len(line.split()) > NAV_SHORT_WORDS or _SENTENCE_END.search(line) or not _TITLE_START.match(line):
        return False
    wordy = sum(ch.isalnum() or ch.isspace() for ch in line)
    return wordy >= NAV_WORDY_SHARE * len(line)


def is_navigation(text: str) -> bool:
    """A table of contents or menu: many short heading-like lines and few sentences.

    A heading-like line has at most 12 words, starts with a capital or a digit, does not end
    like a sentence and is at least 85% letters, digits and spaces (so code is not one); a
    passage of at least 4 lines, 70% or more of them heading-like and at most 20% of them
    ending a sentence, is navigation.
    """
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if len(lines) < NAV_MIN_LINES:
        return False
    ends = sum(bool(_SENTENCE_END.search(ln)) for ln in lines)
    short = sum(_heading_like(ln) for ln in lines)
    return short >= NAV_SHORT_SHARE * len(lines) and ends <= NAV_MAX_SENTENCE_SHARE * len(lines)


def _join(a: Hit, b: Hit) -> Hit:
    """One passage covering two overlapping or touching chunks of one document (``a`` ranks higher)."""
    left, right = (a, b) if a.start <= b.start else (b, a)
    if right.end <= left.end:
        text, end = left.text, left.end
    else:
        text, end = left.text + right.text[max(left.end - right.start, 0):], right.end
    return replace(a, text=text, start=left.start, end=end, score=max(a.score, b.score))


def merge_overlapping(hits: list[Hit]) -> list[Hit]:
    """Chunks of one document whose spans overlap or touch become one passage, at the best rank."""
    out: list[Hit] = []
    for hit in hits:
        for i, kept in enumerate(out):
            if kept.doc_id == hit.doc_id and hit.start <= kept.end and kept.start <= hit.end:
                out[i] = _join(kept, hit)
                break
        else:
            out.append(hit)
    # A merge can make a passage reach one that was kept apart before: merge again until stable.
    return out if len(out) == len(hits) else merge_overlapping(out)


def pack(hits: list[Hit], count_tokens: Callable[[str], int], budget: int, *,
         max_passages: int | None = None) -> list[Hit]:
    """The best passages (in rank order) whose tokens add up to at most ``budget``.

    Navigation-like passages are dropped and overlapping chunks merged first; a passage that
    does not fit is skipped and smaller ones after it may still be taken. The best passage is
    always given (cut to the budget) so that a long top hit never leaves the prompt empty.
    """
    passages = merge_overlapping([h for h in hits if not is_navigation(h.text)])
    out: list[Hit] = []
    used = 0
    for hit in passages:
        if max_passages is not None and len(out) >= max_passages:
            break
        n = count_tokens(hit.text)
        if used + n <= budget:
            out.append(hit)
            used += n
        elif not out:
            cut = max(1, len(hit.text) * budget // max(n, 1))
            out.append(replace(hit, text=hit.text[:cut], end=hit.start + cut))
            used = budget
    return out


def estimate_tokens(text: str) -> int:
    """A tokenizer-free estimate (about 4 characters a token in English) for remote models."""
    return max(1, (len(text) + 3) // 4)

"""Citation checks: each cited sentence against the passage it cites; unsupported citations are dropped.

Support is measured one of two ways (ESRAG_CITATION_CHECK):
- ``overlap``: the share of the sentence's content words (stemmed, English stop words left out)
  that occur in the cited passage;
- ``embedding``: the highest cosine similarity between the sentence and any sentence of the
  cited passage, with the index's embedding model.
A citation counts as support when the measure reaches ESRAG_CITATION_MIN_SUPPORT.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from esrag.stemming import stem_text

_CITE = re.compile(r"\s*\[(\d{1,4}(?:\s*,\s*\d{1,4})*)\]")

# Sentence boundaries: after . ! ? or a closing bracket, before something that starts a sentence;
# after a citation marker (not an index: list[0]) whatever follows (chat text starts sentences in
# lower case: "Trading shares. [3] the stockholders. [5]" is two sentences); and line breaks.
_BOUNDARY = re.compile(r"(?<=[.!?\]])[ \t]+(?=[A-Z0-9\"'(`*])"
                       r"|(?:(?<=[\s.!?\]]\[\d\])|(?<=[\s.!?\]]\[\d\d\])|(?<=[\s.!?\]]\[\d\d\d\]))"
                       r"[ \t]+(?=\S)|\n+")
_WORD = re.compile(r"\w+")
_LEADING = re.compile(r"\s*(?:\[\d{1,4}(?:\s*,\s*\d{1,4})*\]\s*)+:?\s*")
# Where a citation goes: before the sentence's closing punctuation, as the prompt's example does.
_CLOSING = re.compile(r"[.!?:;]*\s*$")
# Lines of an interactive session (prompt or continuation) and a line that is one quoted literal.
_SESSION = re.compile(r"(?:>>>|\.\.\.)(?:\s|$)")
_QUOTED = re.compile(r"""(['"]).*\1""")
# Passage sentences (for extractive answers and embedding support): after . ! ? before a capital.
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")


def split_sentences(text: str) -> list[str]:
    """Sentences of a passage (a simple punctuation rule; good enough for extraction)."""
    return [s.strip() for s in _SENTENCE.split(" ".join(text.split())) if len(s.strip()) > 3]


def prose_sentences(text: str) -> list[str]:
    """The sentences of a passage a reader can take as prose, for extractive answers: each line
    apart (a code block's lines and the paragraph after it are not one sentence), lines of an
    interactive session (``>>>``, ``...``), quoted output and lines of mostly symbols left out.
    Text of one line (a corpus stored flattened) has nothing to tell code by: all its sentences."""
    if "\n" not in text.strip():
        return split_sentences(text)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or _SESSION.match(line) or _QUOTED.fullmatch(line) or not _mostly_letters(line):
            continue
        out.extend(split_sentences(line))
    return out


def _mostly_letters(line: str) -> bool:
    chars = [c for c in line if not c.isspace()]
    return sum(c.isalpha() for c in chars) >= 0.6 * len(chars)


@dataclass
class Checked:
    """An answer after the check: its text, what was dropped, and how many claims held."""

    answer: str
    kept: list[int]  # passage numbers still cited, in order of first citation
    unsupported: int  # citations dropped
    sentences: int  # answer sentences (claims)
    supported: int  # sentences with at least one supported citation

    @property
    def faithfulness(self) -> float | None:
        """Share of answer sentences supported by the passages they cite (None: no sentence)."""
        return round(self.supported / self.sentences, 4) if self.sentences else None


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each non-empty sentence of an answer; citations stay with their sentence.

    A citation written before its sentence ("[1] Freeze is a tool.") belongs to the sentence after
    it on the same line; one on a line of its own belongs to the text before it.
    """
    raw, pos = [], 0
    for m in _BOUNDARY.finditer(text):
        raw.append((pos, m.start()))
        pos = m.end()
    raw.append((pos, len(text)))
    raw = [(a, b) for a, b in raw if text[a:b].strip()]
    spans: list[tuple[int, int]] = []
    lead: int | None = None  # start of citations waiting for their sentence
    for i, (a, b) in enumerate(raw):
        if lead is not None:
            a, lead = lead, None
        if not claim_text(text[a:b]):
            if i + 1 < len(raw) and "\n" not in text[b:raw[i + 1][0]]:
                lead = a
                continue
            if spans:
                spans[-1] = (spans[-1][0], b)
                continue
        spans.append((a, b))
    return spans


def move_leading_citations(sentence: str) -> str:
    """``[1] Freeze is a tool.`` -> ``Freeze is a tool [1].``: citations go where the prompt asks."""
    m = _LEADING.match(sentence)
    if not m or not claim_text(sentence[m.end():]):
        return sentence
    return cite_at_end(sentence[m.end():].rstrip(), m.group(0).strip().rstrip(":").strip())


def cite_at_end(sentence: str, markers: str) -> str:
    """``markers`` appended to ``sentence`` before its closing punctuation: ``It is [1].``"""
    cut = _CLOSING.search(sentence).start()  # always matches (it can match the empty string)
    return f"{sentence[:cut]} {markers}{sentence[cut:]}"


def cited_numbers(sentence: str) -> list[int]:
    """The passage numbers a sentence cites, in order."""
    return [int(n) for m in _CITE.finditer(sentence) for n in m.group(1).split(",")]


def claim_text(sentence: str) -> str:
    """A sentence without its citation markers."""
    return _CITE.sub("", sentence).strip()


def states_something(claim: str) -> bool:
    """Whether a claim has a word in it: ``[`` (what is left of Qwen 0.5B's "[1] [2] ... [12] ["
    at its token cap) supports nothing, whatever the passage."""
    return _WORD.search(claim) is not None


def _content_words(text: str) -> set[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    words = [w for w in _WORD.findall(text.lower()) if w not in ENGLISH_STOP_WORDS]
    return set(stem_text(" ".join(words), "english").split())


def overlap_support(claim: str, passage: str) -> float:
    """Share of the claim's content words found in the passage (1.0 for a claim without any)."""
    words = _content_words(claim)
    if not words:
        return 1.0
    return len(words & _content_words(passage)) / len(words)


def embedding_support(embedder: Any) -> Callable[[str, str], float]:
    """Support as the best cosine between the claim and the passage's sentences (both embedded
    as documents; each passage's sentence vectors are computed once per returned function)."""
    passages: dict[str, Any] = {}

    def score(claim: str, passage: str) -> float:
        if passage not in passages:
            passages[passage] = embedder.encode_document(split_sentences(passage) or [passage])
        return float((passages[passage] @ embedder.encode_document([claim])[0]).max())

    return score


def check_citations(answer: str, passages: Sequence[str], support: Callable[[str, str], float],
                    min_support: float, *, drop: bool = True) -> Checked:
    """Check every [n] of ``answer`` against passage n (1-based); drop those below ``min_support``."""
    out: list[str] = []
    pos = 0
    kept: list[int] = []
    unsupported = sentences = supported = 0
    for start, end in sentence_spans(answer):
        sentence = answer[start:end]
        claim = claim_text(sentence)
        if not claim:  # a citation on a line of its own belongs to the text before it
            out.append(answer[pos:end])
            pos = end
            continue
        sentences += 1
        good: list[int] = []
        for n in dict.fromkeys(cited_numbers(sentence) if states_something(claim) else []):
            if 1 <= n <= len(passages) and support(claim, passages[n - 1]) >= min_support:
                good.append(n)
        unsupported += len(cited_numbers(sentence)) - sum(cited_numbers(sentence).count(n) for n in good)
        supported += bool(good)
        for n in good:
            if n not in kept:
                kept.append(n)
        if drop:
            sentence = _CITE.sub(lambda m, good=good: _keep(m, good), move_leading_citations(sentence))
        out.append(answer[pos:start] + sentence)
        pos = end
    out.append(answer[pos:])
    text = "".join(out) if drop else answer
    if not drop:
        kept = list(dict.fromkeys(n for n in cited_numbers(answer) if 1 <= n <= len(passages)))
    return Checked(answer=text, kept=kept, unsupported=unsupported, sentences=sentences,
                   supported=supported)


def _keep(m: re.Match[str], good: list[int]) -> str:
    nums = [int(n) for n in m.group(1).split(",") if int(n) in good]
    if not nums:
        return ""
    lead = m.group(0)[: len(m.group(0)) - len(m.group(0).lstrip())]
    return lead + "".join(f"[{n}]" for n in nums)

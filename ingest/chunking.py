"""Token-aware, structure-respecting chunking with exact character offsets.

A document is cut into sections at its headings; each section into paragraphs (blank
lines), oversized paragraphs into sentences (or lines), and oversized sentences into runs
of whole words measured with the embedder's own tokenizer. Units are packed greedily up
to the token budget, preferring to end a chunk at a paragraph boundary, and consecutive
chunks of a section share trailing units up to the overlap budget. Every chunk is a
contiguous span: ``chunk.text == document.text[chunk.start:chunk.end]``.

No near-empty chunks (``min_tokens``, ESRAG_CHUNK_MIN_TOKENS): a section with fewer tokens
than that (a chapter title left on its own by a page's navigation header, a heading with no
body) joins the following section, the heading between them included in the span; the
last section of a document joins the one before. A section's last chunk whose own text
(beyond the overlap it repeats) is that small is merged back into the chunk before when
the merged chunk still fits the model. A chunk may so exceed the token budget, by less
than ``min_tokens``; a document whose whole text is that small stays one chunk.

Every step is linear in the input: the separators are regular expressions that never
rescan a whitespace run (no open-ended whitespace pattern in front of a required
character), and the loops
move forward only. A caller's ``deadline`` bounds the time a hostile document may take
(the pipeline gives chunking the parse budget, ESRAG_PARSE_TIMEOUT).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any, Protocol

from ingest.documents import Document

_PARA_SEP = re.compile(r"\n[ \t\r\f\v]*\n\s*")
# A sentence ends after . ! ? (and closing quotes/brackets) before whitespace; a line break
# ends one too. The line-break branch starts at the newline itself: a leading \s* there
# rescans a whitespace run from every position in it (quadratic); split_spans trims the
# whitespace left in front of the newline instead.
_SENT_SEP = re.compile(r"(?<=[.!?])[\"')\]]*\s+|\n\s*")
SPECIAL_TOKENS = 2  # [CLS] and [SEP] (or their equivalents) around every input
MAX_CONTEXT_TOKENS = 48


class ChunkingTimeout(Exception):
    """Chunking a document took longer than its deadline."""


def _check(deadline: float | None) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise ChunkingTimeout


class TokenCounter(Protocol):
    """What the chunker needs from a tokenizer."""

    def count(self, texts: list[str]) -> list[int]:
        """Tokens of each text, special tokens excluded."""
        ...

    def offsets(self, text: str) -> list[tuple[int, int]]:
        """Character span of each token of ``text``."""
        ...


class HFTokenCounter:
    """TokenCounter over a Hugging Face fast tokenizer (the embedder's own)."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        try:  # counting long paragraphs is the point; silence the "longer than max" warning
            from transformers.utils import logging as hf_logging

            hf_logging.get_logger("transformers.tokenization_utils_base").setLevel("ERROR")
        except ImportError:  # pragma: no cover
            pass

    def count(self, texts: list[str]) -> list[int]:
        """Tokens of each text, special tokens excluded."""
        if not texts:
            return []
        enc = self.tokenizer(
            texts, add_special_tokens=False, return_attention_mask=False, return_token_type_ids=False,
        )
        return [len(ids) for ids in enc["input_ids"]]

    def offsets(self, text: str) -> list[tuple[int, int]]:
        """Character span of each token of ``text``."""
        enc = self.tokenizer(
            text, add_special_tokens=False, return_offsets_mapping=True,
            return_attention_mask=False, return_token_type_ids=False,
        )
        return [tuple(o) for o in enc["offset_mapping"]]


@dataclass(frozen=True)
class Chunk:
    """A span of a document's text with the heading path it sits under."""

    chunk_no: int
    start: int
    end: int
    text: str
    headings: tuple[str, ...]
    context: str
    tokens: int

    def embed_input(self) -> str:
        """What the model embeds: the heading context line, then the text."""
        return f"{self.context}\n{self.text}" if self.context else self.text


@dataclass(frozen=True)
class _Unit:
    start: int
    end: int
    tokens: int
    para_end: bool


def split_spans(text: str, start: int, end: int, sep: re.Pattern[str]) -> list[tuple[int, int]]:
    """Whitespace-trimmed, non-empty spans of ``text[start:end]`` between separator matches."""
    spans = []
    pos = start
    for m in sep.finditer(text, start, end):
        spans.append((pos, m.start()))
        pos = m.end()
    spans.append((pos, end))
    out = []
    for a, b in spans:
        while a < b and text[a].isspace():
            a += 1
        while b > a and text[b - 1].isspace():
            b -= 1
        if a < b:
            out.append((a, b))
    return out


def sections(doc: Document) -> list[tuple[int, int, tuple[str, ...]]]:
    """(start, end, heading path) of the text before the first heading and under each heading."""
    out = []
    heads = sorted(doc.headings, key=lambda h: h.start)
    first = heads[0].start if heads else len(doc.text)
    out.append((0, first, ()))
    stack: list[tuple[int, str]] = []
    for i, h in enumerate(heads):
        while stack and stack[-1][0] >= h.level:
            stack.pop()
        stack.append((h.level, h.text))
        end = heads[i + 1].start if i + 1 < len(heads) else len(doc.text)
        out.append((h.body_start, max(h.body_start, end), tuple(t for _, t in stack)))
    return out


def context_line(title: str, headings: tuple[str, ...]) -> str:
    """Title and heading path joined by " > " (the title once, not repeated by an H1)."""
    parts = [title] if title else []
    for h in headings:
        if not parts or h != parts[-1]:
            parts.append(h)
    return " > ".join(parts)


def _word_pieces(
    text: str, start: int, end: int, budget: int, counter: TokenCounter
) -> list[_Unit]:
    """Split one oversized sentence into runs of whole words of at most ``budget`` tokens."""
    offs = [(start + a, start + b) for a, b in counter.offsets(text[start:end]) if b > a]
    pieces: list[_Unit] = []
    p = 0
    while p < len(offs):
        limit = min(len(offs), p + budget)
        q = limit
        if limit < len(offs):
            # cut before a token that starts a word (preceded by whitespace), never inside one
            q = next(
                (i for i in range(limit, p, -1) if offs[i][0] > 0 and text[offs[i][0] - 1].isspace()),
                limit,
            )
        pieces.append(_Unit(offs[p][0], offs[q - 1][1], q - p, False))
        p = q
    if pieces:
        last = pieces[-1]
        pieces[-1] = _Unit(last.start, last.end, last.tokens, True)
    return pieces


def _units(
    text: str, start: int, end: int, budget: int, counter: TokenCounter, deadline: float | None = None
) -> list[_Unit]:
    paras = split_spans(text, start, end, _PARA_SEP)
    counts = counter.count([text[a:b] for a, b in paras])
    units: list[_Unit] = []
    for (a, b), n in zip(paras, counts, strict=True):
        _check(deadline)
        if n <= budget:
            units.append(_Unit(a, b, n, True))
            continue
        sents = split_spans(text, a, b, _SENT_SEP)
        scounts = counter.count([text[x:y] for x, y in sents])
        for k, ((x, y), m) in enumerate(zip(sents, scounts, strict=True)):
            last = k == len(sents) - 1
            _check(deadline)
            if m <= budget:
                units.append(_Unit(x, y, m, last))
            else:
                pieces = _word_pieces(text, x, y, budget, counter)
                if pieces and not last:
                    p = pieces[-1]
                    pieces[-1] = _Unit(p.start, p.end, p.tokens, False)
                units.extend(pieces)
    return units


def _pack(
    units: list[_Unit], budget: int, overlap: int, deadline: float | None = None, *,
    min_tokens: int = 0, cap: int = 0,
) -> list[tuple[int, int]]:
    """Index ranges [i, j) of units forming each chunk.

    A chunk under ``min_tokens`` tokens takes the next unit too, and a rest under
    ``min_tokens`` stays with the chunk before it, when the chunk then holds at most ``cap``.
    """
    n = len(units)
    pre = [0] * (n + 1)  # pre[k]: tokens of units[:k]
    for k, u in enumerate(units):
        pre[k + 1] = pre[k] + u.tokens
    out = []
    i = 0
    while i < n:
        _check(deadline)
        j, tokens = i, 0
        while j < n and tokens + units[j].tokens <= budget:
            tokens += units[j].tokens
            j += 1
        j = max(j, i + 1)
        if j < n:  # prefer ending at a paragraph boundary when the chunk stays at least half full
            running, best = 0, None
            for k in range(i, j):
                running += units[k].tokens
                if units[k].para_end and running * 2 >= budget:
                    best = k + 1
            if best is not None:
                j = best
        if j < n and pre[j] - pre[i] < min_tokens and pre[j + 1] - pre[i] <= cap:
            j += 1  # too small to stand alone (a short paragraph before a long one): take the next unit
        if j < n and pre[n] - pre[j] < min_tokens and pre[n] - pre[i] <= cap:
            j = n  # the rest is too small to stand alone: it stays with this chunk
        out.append((i, j))
        if j >= n:
            break
        k, carried = j, 0
        while k - 1 > i and carried + units[k - 1].tokens <= overlap:
            carried += units[k - 1].tokens
            k -= 1
        i = k
    return out


@dataclass
class _Group:
    """Consecutive sections chunked together: their span, the last one's heading path."""

    start: int
    end: int
    path: tuple[str, ...]
    ctx: str
    budget: int
    room: int
    units: list[_Unit]
    tokens: int = 0
    head: int = 0  # where the first section's heading starts (its text joins with the section)

    def extend(self, units: list[_Unit]) -> None:
        """Append units (in place: a long run of small sections stays linear)."""
        self.units.extend(units)
        self.tokens += sum(u.tokens for u in units)


def _groups(
    doc: Document, counter: TokenCounter, max_tokens: int, min_tokens: int, model_max_tokens: int,
    deadline: float | None,
) -> list[_Group]:
    """The sections of ``doc`` with every one under ``min_tokens`` joined to its neighbour."""
    heads = sorted(doc.headings, key=lambda h: h.start)
    # (heading start, body start, end, path); the text before the first heading has no heading
    secs = [(h0, a, b, path) for h0, (a, b, path) in zip([0] + [h.start for h in heads], sections(doc),
                                                           strict=True)]
    if min_tokens <= 0:  # no merging: every section with text stands alone
        secs = [sec for sec in secs if doc.text[sec[1]:sec[2]].strip()]
    elif not doc.text[secs[0][1]:secs[0][2]].strip():
        secs = secs[1:]  # nothing before the first heading: not a section to join
    contexts = [context_line(doc.title, sec[3]) for sec in secs]
    ctx_tokens = counter.count(contexts)
    groups: list[_Group] = []
    pending: _Group | None = None
    for k, ((head, start, end, path), ctx, ctx_n) in enumerate(zip(secs, contexts, ctx_tokens, strict=True)):
        if k + 1 < len(secs) and not doc.text[start:end].strip() and (
                pending is not None or secs[k + 1][3][:len(path)] == path):
            # a heading with no body: over a subsection it is in the subsection's context, after
            # a small section it joins the next section with a body, as the small one does
            continue
        room = model_max_tokens - SPECIAL_TOKENS - (min(ctx_n + 1, MAX_CONTEXT_TOKENS) if ctx else 0)
        budget = max(1, min(max_tokens, max(room, 8)))
        if pending is None:
            group = _Group(start, end, path, ctx, budget, room, [])
            group.extend(_units(doc.text, start, end, budget, counter, deadline))
        else:  # the small sections before join this one, their headings and its own included
            group = pending
            if group.head < group.start:
                own, group.units, group.tokens = group.units, [], 0
                group.extend(_units(doc.text, group.head, group.start, group.budget, counter, deadline) + own)
                group.start = group.head
            group.extend(_units(doc.text, group.end, end, budget, counter, deadline))
            group.end, group.path, group.ctx, group.budget, group.room = end, path, ctx, budget, room
        pending = None
        if group.tokens >= min_tokens:
            groups.append(group)
        else:  # too small: it joins the next section
            group.head = min(head, group.start)
            pending = group
    if pending is not None:
        if groups:  # the last section is small: it joins the one before
            last = groups[-1]
            last.extend(_units(doc.text, last.end, pending.end, last.budget, counter, deadline))
            last.end = pending.end
        elif pending.units:
            groups.append(pending)
    return groups


def chunk_document(
    doc: Document, counter: TokenCounter, *, max_tokens: int, overlap: int, min_tokens: int,
    model_max_tokens: int, deadline: float | None = None,
) -> list[Chunk]:
    """The chunks of ``doc``, numbered from 0 in text order; none under ``min_tokens`` tokens
    (at most half of ``max_tokens``; 0: no merging) unless the whole document is that small.

    Raises ChunkingTimeout when ``time.monotonic()`` passes ``deadline`` before the end.
    """
    min_tokens = min(min_tokens, max_tokens // 2)  # small budgets keep room for whole chunks
    chunks: list[Chunk] = []
    for g in _groups(doc, counter, max_tokens, min_tokens, model_max_tokens, deadline):
        units = g.units
        cap = min(g.budget + max(min_tokens - 1, 0), max(g.room, g.budget))
        for i, j in _pack(units, g.budget, min(overlap, g.budget // 2), deadline, min_tokens=min_tokens,
                          cap=cap):
            a, b = units[i].start, units[j - 1].end
            chunks.append(Chunk(
                chunk_no=len(chunks), start=a, end=b, text=doc.text[a:b], headings=g.path,
                context=g.ctx, tokens=sum(u.tokens for u in units[i:j]),
            ))
    return chunks

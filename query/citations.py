"""Numbered-passage citations: the prompt, and a streaming parser that maps every [n] to a chunk."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from query.hits import Hit

NOT_FOUND = "The passages do not contain the answer."
# The example is off the topics of the eval sets: a Python sentence there was copied into answers on
# the Python FAQ as a claim of its own, and one without any content made Qwen 0.5B decline most
# questions (docs/QUALITY.md, "The answer table on python-faq full, third round").
SYSTEM_PROMPT = (
    "You answer questions using only the numbered passages you are given. "
    "Write at most three short sentences. End every sentence with the numbers of the passages "
    "it relies on in square brackets, like [1] or [2][3], for example: "
    '"Water boils at 100 degrees Celsius at sea level [1]." Cite only passage numbers that exist. '
    f'If the passages do not contain the answer, say exactly: "{NOT_FOUND}"'
)
REASONING_PROMPT = (
    " First think step by step inside <reasoning></reasoning> tags, then write the final "
    "answer after the closing tag."
)
MAX_PASSAGE_CHARS = 2000

# The decline in other words, as small models write it ("The passage does not contain the answer.",
# "The provided passages do not mention ..."): one sentence saying the passages lack the answer.
_DECLINE = re.compile(
    r"(?:i'?m sorry,?\s+(?:but\s+)?)?(?:the\s+)?(?:provided\s+|given\s+)?"
    r"(?:passages?|context|documents?|texts?)\s+(?:do|does)\s+not\s+"
    r"(?:contain|include|provide|mention|say|answer|have)\b[^.!?\n]*[.!]?", re.I)


def is_decline(answer: str) -> bool:
    """Whether ``answer`` (citations aside) is only a sentence saying the passages lack the answer."""
    return _DECLINE.fullmatch(_CITE.sub("", answer).strip()) is not None


# "[1]", "[1, 2]" with any whitespace before it (dropped together with a removed citation).
_CITE = re.compile(r"(\s*)\[(\d{1,4}(?:\s*,\s*\d{1,4})*)\]")
# A tail that may still become a citation once more tokens arrive.
_PARTIAL = re.compile(r"\s*(?:\[[\d,\s]{0,24})?$")


@dataclass
class Citation:
    """One cited passage: its number in the prompt and where its text lies in the source document."""

    n: int
    doc_id: str
    chunk_id: str
    source: str
    text: str
    start: int
    end: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def build_messages(question: str, hits: list[Hit], *, reasoning: bool = False) -> list[dict[str, str]]:
    """Chat messages: the instructions, then passages numbered from 1 and the question."""
    lines = []
    for n, hit in enumerate(hits, start=1):
        text = " ".join(hit.text.split())[:MAX_PASSAGE_CHARS]
        lines.append(f"[{n}] ({hit.source}) {text}")
    system = SYSTEM_PROMPT + (REASONING_PROMPT if reasoning else "")
    user = ("Passages:\n" + "\n".join(lines)
            + f"\n\nQuestion: {question}\nAnswer, each sentence ending with its [n]:")
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


class CitationParser:
    """Rewrites a (streamed) answer: keeps [n] that name a passage, drops and counts the rest.

    ``feed`` returns the text that is safe to show now; a tail that could still turn into a
    citation (``"... [1"`` waiting for ``"2]"``) is held back until it is decided.
    """

    def __init__(self, hits: list[Hit]):
        self.hits = hits
        self.used: list[int] = []
        self.removed = 0
        self._buf = ""

    def feed(self, chunk: str) -> str:
        """Add streamed text; return what can be emitted."""
        self._buf += chunk
        m = _PARTIAL.search(self._buf)
        cut = m.start() if m else len(self._buf)
        ready, self._buf = self._buf[:cut], self._buf[cut:]
        return self._rewrite(ready)

    def close(self) -> str:
        """Flush what was held back at the end of the stream."""
        out, self._buf = self._rewrite(self._buf), ""
        return out

    def _rewrite(self, text: str) -> str:
        return _CITE.sub(self._replace, text)

    def _replace(self, m: re.Match[str]) -> str:
        keep = []
        for part in m.group(2).split(","):
            n = int(part)
            if 1 <= n <= len(self.hits):
                keep.append(n)
                if n not in self.used:
                    self.used.append(n)
            else:
                self.removed += 1
        if not keep:
            return ""
        return m.group(1) + "".join(f"[{n}]" for n in keep)

    def citations(self) -> list[Citation]:
        """The cited passages, in order of first citation."""
        return [to_citation(n, self.hits[n - 1]) for n in self.used]


def to_citation(n: int, hit: Hit) -> Citation:
    """Citation for passage ``n``."""
    return Citation(n=n, doc_id=hit.doc_id, chunk_id=hit.chunk_id, source=hit.source, text=hit.text,
                    start=hit.start, end=hit.end)


class ReasoningFilter:
    """Hides every ``<reasoning>...</reasoning>`` block of a stream and keeps the blocks aside.

    Small models do not stop at one block (Qwen 0.5B, its answer opened inside one, wrote five
    in a row), nor always open the one they close: no tag reaches the answer either way. Nor do
    they always write an answer after their blocks: a stream with no answer outside any block
    wrote it in its last block (Qwen 0.5B in 17 of 21 chatterbot answers, never closing it),
    and that block is the answer (see ``close``).
    """

    OPEN, CLOSE = "<reasoning>", "</reasoning>"

    def __init__(self) -> None:
        self.blocks: list[str] = []
        self._buf = ""
        self._inside = False
        self._strip = False
        self._answered = False  # any answer text outside a block so far

    @property
    def reasoning(self) -> str:
        """The blocks' text, one paragraph per block."""
        return "\n\n".join(b for b in self.blocks if b)

    def feed(self, chunk: str) -> str:
        """Add streamed text; return the part that belongs to the answer."""
        self._buf += chunk
        out: list[str] = []
        while True:
            if self._strip and not self._inside:
                self._buf = self._buf.lstrip()
                if not self._buf:
                    break
                self._strip = False
            if self._inside:
                end = self._buf.find(self.CLOSE)
                if end < 0:
                    break
                self.blocks.append(self._buf[:end].strip())
                self._buf, self._inside = self._buf[end + len(self.CLOSE):], False
                self._strip = True  # the space between a block and the answer is neither
                continue
            tags = [(at, tag) for tag in (self.OPEN, self.CLOSE) if (at := self._buf.find(tag)) >= 0]
            if not tags:
                keep = self._partial_tag()
                out.append(self._buf[:len(self._buf) - keep])
                self._buf = self._buf[len(self._buf) - keep:]
                break
            at, tag = min(tags)
            out.append(self._buf[:at])
            self._buf = self._buf[at + len(tag):]
            self._inside = tag == self.OPEN  # a close tag with no open one is dropped
        text = "".join(out)
        self._answered = self._answered or bool(text.strip())
        return text

    def _partial_tag(self, text: str | None = None) -> int:
        """Length of the end of ``text`` (the buffer) that may be the start of a tag."""
        text = self._buf if text is None else text
        for n in range(min(len(text), len(self.CLOSE)), 0, -1):
            tail = text[-n:]
            if self.OPEN.startswith(tail) or self.CLOSE.startswith(tail):
                return n
        return 0

    def close(self) -> str:
        """End of stream. Outside a block, what is held back can only be the start of a tag the
        token cap cut off (Qwen 0.5B's answer "<reasoning"), dropped; an unclosed block is a
        block. With no answer written outside the blocks, the last non-empty block is the
        answer (returned, no longer kept as reasoning)."""
        if self._inside:
            self.blocks.append(self._buf.strip())
        self._buf, self._inside = "", False
        if self._answered:
            return ""
        while self.blocks and not self.blocks[-1]:
            self.blocks.pop()
        if not self.blocks:
            return ""
        text = self.blocks.pop()
        self._answered = True
        text = re.sub(rf"\s*(?:{re.escape(self.OPEN)}|{re.escape(self.CLOSE)})\s*", " ", text)
        return text[:len(text) - self._partial_tag(text)].strip()

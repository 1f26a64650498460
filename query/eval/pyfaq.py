"""Build the Python-FAQ eval set from Debian's python3.11-doc HTML.

Queries are the FAQ's questions (the h3 headings of faq/*.html); each one's relevant document
is its answer section, indexed without the question heading (else the query would be a copy
of the title); that section is also the reference answer. The corpus is every other section
of the Python documentation, split by heading, with the stable id ``path#section-anchor``.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from lxml import html as lhtml

from esrag.errors import EsragError

DEFAULT_DOCS = Path("/usr/share/doc/python3.11/html")
SKIP_PAGES = re.compile(
    r"^(genindex.*|py-modindex|search|contents|index|copyright|license|bugs|about)\.html$"
)
HEADINGS = ("h1", "h2", "h3", "h4", "h5", "h6")
MIN_CHARS = 40
CI_FAQ_PAGE = "faq/general.html"


@dataclass(frozen=True)
class Section:
    """One heading's section of one page."""

    doc_id: str
    heading: str
    title: str
    text: str
    level: int


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("¶", "")).strip()


def _heading(sec: lhtml.HtmlElement) -> tuple[str, int]:
    for child in sec:
        if child.tag in HEADINGS:
            return _clean(child.text_content()), int(child.tag[1])
    return "", 0


def _own_text(sec: lhtml.HtmlElement, *, nested: bool) -> str:
    """Text of a section without its heading, navigation, and (unless nested) subsections."""
    parts: list[str] = []
    for child in sec:
        if not isinstance(child.tag, str) or child.tag in HEADINGS or child.tag == "nav":
            continue
        if child.tag == "section" and not nested:
            continue
        parts.append(child.text_content())
    return _clean(" ".join(parts))


def page_sections(root: Path, page: Path) -> Iterator[Section]:
    """Sections of one HTML page in document order; FAQ question sections keep their subsections."""
    rel = page.relative_to(root).as_posix()
    tree = lhtml.parse(str(page))
    main = tree.xpath("//div[@role='main']")
    if not main:
        return
    sections = main[0].xpath(".//section[@id]")
    page_title = _heading(sections[0])[0] if sections else rel
    is_faq = rel.startswith("faq/")
    for sec in sections:
        if is_faq and any(_heading(a)[1] == 3 for a in sec.iterancestors("section")):
            continue  # part of a question's answer
        heading, level = _heading(sec)
        question = is_faq and level == 3
        text = _own_text(sec, nested=question)
        if len(text) < MIN_CHARS:
            continue
        parent = next((_heading(a)[0] for a in sec.iterancestors("section") if _heading(a)[1] == 2), "")
        title = f"{page_title}: {parent}" if question and parent else (page_title if question else heading)
        yield Section(f"{rel}#{sec.get('id')}", heading, title, text, level)


def pages(root: Path) -> list[Path]:
    """The documentation pages, sorted, without indexes and boilerplate."""
    if not (root / "faq").is_dir():
        raise EsragError(
            f"{root} is not Python's HTML documentation (no faq/ folder); install python3.11-doc"
        )
    return sorted(
        p for p in root.rglob("*.html")
        if not SKIP_PAGES.match(p.relative_to(root).as_posix())
        and not p.relative_to(root).parts[0].startswith("_")
    )


def build(root: Path = DEFAULT_DOCS, *, small: bool = False, sample: int = 250, seed: int = 13,
          ) -> tuple[list[dict], list[dict], list[tuple[str, str, int]]]:
    """Corpus, queries and qrels; ``small`` keeps one FAQ page plus ``sample`` seeded other sections."""
    faq_pages = {CI_FAQ_PAGE} if small else None
    corpus: list[dict] = []
    queries: list[dict] = []
    qrels: list[tuple[str, str, int]] = []
    others: list[dict] = []
    for page in pages(root):
        rel = page.relative_to(root).as_posix()
        for sec in page_sections(root, page):
            doc = {"_id": sec.doc_id, "title": sec.title, "text": sec.text}
            if rel.startswith("faq/") and sec.level == 3:
                if faq_pages is None or rel in faq_pages:
                    corpus.append(doc)
                    qid = sec.doc_id
                    # the answer section is also the reference answer (for --answers)
                    queries.append({"_id": qid, "text": sec.heading, "metadata": {"answers": [sec.text]}})
                    qrels.append((qid, sec.doc_id, 1))
                    continue
            others.append(doc)
    if small:
        others = random.Random(seed).sample(others, min(sample, len(others)))
    corpus.extend(others)
    corpus.sort(key=lambda d: d["_id"])
    return corpus, queries, qrels

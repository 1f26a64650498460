"""HTML to text: the page's main content as paragraphs, with heading positions.

The main content is the page's ``<main>``, ``[role=main]`` or single ``<article>``; on pages
without one, the body minus its boilerplate: header, footer, navigation, sidebars, ARIA
banner/navigation/search roles, and elements whose class or id names a menu, sidebar,
cookie banner, breadcrumb, share bar or comment section (or DocBook's navheader/navfooter).
Scripts, forms and permalink anchors are dropped everywhere; ``<pre>`` keeps its line breaks.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import lxml.html

from ingest.documents import Heading

_WS = re.compile(r"\s+")
_XML_DECL = re.compile(r"^\s*<\?xml[^>]*\?>", re.IGNORECASE)
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_\-]+)""", re.IGNORECASE)

DROP = {
    "script", "style", "nav", "aside", "form", "noscript", "template", "svg", "button",
    "iframe", "object", "select", "textarea", "head", "title", "meta", "link",
}
DROP_OUTSIDE_MAIN = {"header", "footer"}
BLOCK = {
    "p", "div", "section", "article", "main", "li", "ul", "ol", "dl", "dt", "dd", "blockquote",
    "table", "thead", "tbody", "tfoot", "tr", "figure", "figcaption", "details", "summary",
    "address", "hr", "caption", "body", "html", "header", "footer", "center",
}
HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
# navheader/navfooter: DocBook XSL's Prev/Next tables, which repeat the chapter title as text
DROP_CLASSES = {"headerlink", "sphinxsidebar", "related", "navigation", "breadcrumb", "skip-link",
                "navheader", "navfooter"}
_BOILERPLATE = re.compile(
    r"(^|[\s_-])(nav|navbar|menu|sidebar|footer|header|cookie|consent|banner|breadcrumbs?|share|"
    r"social|comments?|advert|ads|related|skip)($|[\s_-])",
    re.IGNORECASE,
)


class TextBuilder:
    """Collects paragraphs separated by blank lines and records where headings are."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.pos = 0
        self.inline: list[str] = []
        self.headings: list[Heading] = []

    def flush(self) -> None:
        """End the current paragraph."""
        text = _WS.sub(" ", "".join(self.inline)).strip()
        self.inline = []
        if text:
            self.add_block(text)

    def add_block(self, text: str, level: int | None = None) -> None:
        """Append one paragraph (or heading, when ``level`` is given) verbatim."""
        if self.parts:
            self.parts.append("\n\n")
            self.pos += 2
        start = self.pos
        self.parts.append(text)
        self.pos += len(text)
        if level is not None:
            self.headings.append(Heading(start, self.pos, level, text))

    def text(self) -> str:
        """The collected text."""
        self.flush()
        return "".join(self.parts)


def _classes(el: Any) -> set[str]:
    return set((el.get("class") or "").split())


def _walk(el: Any, out: TextBuilder, in_main: bool) -> None:
    tag = el.tag if isinstance(el.tag, str) else None
    if tag is None:  # comment or processing instruction
        return
    tag = tag.lower().rsplit("}", 1)[-1]
    if tag in DROP or (not in_main and tag in DROP_OUTSIDE_MAIN) or _classes(el) & DROP_CLASSES:
        return
    if el.get("role") in ("navigation", "search", "banner", "contentinfo"):
        return
    if not in_main and _BOILERPLATE.search(f"{el.get('class') or ''} {el.get('id') or ''}"):
        return
    level = HEADINGS.get(tag)
    if level is not None:
        out.flush()
        inner = TextBuilder()
        inner.inline.append(el.text or "")
        for child in el:
            _walk(child, inner, in_main)
            inner.inline.append(child.tail or "")
        text = _WS.sub(" ", inner.text()).strip()
        if text:
            out.add_block(text, level)
        return
    if tag == "pre":
        out.flush()
        text = "".join(el.itertext()).strip("\n").rstrip()
        if text.strip():
            out.add_block(text)
        return
    block = tag in BLOCK
    if block:
        out.flush()
    if tag == "br":
        out.inline.append(" ")
    if el.text:
        out.inline.append(el.text)
    for child in el:
        _walk(child, out, in_main)
        if child.tail:
            out.inline.append(child.tail)
    if tag in ("td", "th"):
        out.inline.append(" ")
    if block:
        out.flush()


def decode_html(data: bytes) -> str:
    """HTML bytes as text: UTF-8, or the charset the page declares."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        found = _META_CHARSET.search(data[:4096])
        if not found:
            raise ValueError("not valid UTF-8 and no charset declared") from None
        try:
            text = data.decode(found.group(1).decode("ascii"), errors="replace")
        except LookupError:
            raise ValueError(f"unknown charset {found.group(1).decode('ascii')!r}") from None
    return _XML_DECL.sub("", text, count=1)


def _main_element(tree: Any) -> Any:
    for xpath in ("//main", "//*[@role='main']"):
        found = tree.xpath(xpath)
        if found:
            return found[0]
    articles = tree.xpath("//article")
    return articles[0] if len(articles) == 1 else None


def html_to_text(html: str, check: Callable[[Any], None] | None = None) -> tuple[str, str, list[Heading]]:
    """(title, main text, headings) of an HTML page; ``check`` may refuse the parsed tree."""
    tree = lxml.html.fromstring(html) if html.strip() else None
    if tree is None:
        return "", "", []
    if check is not None:
        check(tree)
    titles = tree.xpath("//title")
    title = _WS.sub(" ", titles[0].text_content()).strip() if titles else ""
    out = TextBuilder()
    main = _main_element(tree)
    if main is not None:
        _walk(main, out, in_main=True)
    else:
        body = tree.find("body")
        _walk(body if body is not None else tree, out, in_main=False)
    text = out.text()
    if not title:
        first = next((h for h in out.headings if h.level == 1), None)
        title = first.text if first else ""
    return title, text, out.headings

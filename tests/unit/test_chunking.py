"""Chunk boundaries, offsets, overlap and heading paths, with a whitespace tokenizer."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ingest.chunking import chunk_document, context_line, sections, split_spans
from ingest.documents import Document, Heading, chunk_id
from ingest.loaders import markdown_headings


class WordCounter:
    """One token per whitespace-separated word (a stand-in for a real tokenizer)."""

    def count(self, texts):
        return [len(t.split()) for t in texts]

    def offsets(self, text):
        return [m.span() for m in re.finditer(r"\S+", text)]


def doc(text, headings=(), title=""):
    return Document(
        doc_id="d", source="/x", title=title, content_type="text/plain", text=text, headings=list(headings)
    )


def chunks_of(d, max_tokens=10, overlap=0, model_max=512, min_tokens=0):
    return chunk_document(
        d, WordCounter(), max_tokens=max_tokens, overlap=overlap, min_tokens=min_tokens,
        model_max_tokens=model_max,
    )


def test_offsets_are_exact_and_spans_trimmed():
    text = "  Alpha beta gamma.\n\n\nDelta epsilon.   \n\n  Zeta eta theta iota.  "
    out = chunks_of(doc(text), max_tokens=4)
    assert [c.text for c in out] == ["Alpha beta gamma.", "Delta epsilon.", "Zeta eta theta iota."]
    for c in out:
        assert text[c.start : c.end] == c.text
    assert [c.chunk_no for c in out] == [0, 1, 2]


def test_paragraphs_are_packed_up_to_the_budget():
    text = "one two three\n\nfour five\n\nsix seven eight nine\n\nten"
    out = chunks_of(doc(text), max_tokens=6)
    assert [c.text for c in out] == ["one two three\n\nfour five", "six seven eight nine\n\nten"]
    assert [c.tokens for c in out] == [5, 5]


def test_long_paragraph_splits_at_sentences_then_words_never_inside_a_word():
    text = "Aa bb cc. Dd ee ff gg. " + " ".join(f"w{i}" for i in range(12)) + "."
    out = chunks_of(doc(text), max_tokens=5)
    assert [c.text for c in out] == [
        "Aa bb cc.",
        "Dd ee ff gg.",
        "w0 w1 w2 w3 w4",
        "w5 w6 w7 w8 w9",
        "w10 w11.",
    ]
    words = set(text.split())
    for c in out:
        assert set(c.text.split()) <= words  # whole words only
        assert c.tokens <= 5


def test_overlap_repeats_trailing_sentences():
    text = "S1 a. S2 b. S3 c. S4 d. S5 e."
    out = chunks_of(doc(text), max_tokens=6, overlap=2)
    assert [c.text for c in out] == ["S1 a. S2 b. S3 c.", "S3 c. S4 d. S5 e."]
    assert out[1].start == text.index("S3")


def test_overlap_never_stalls():
    text = " ".join(f"x{i}." for i in range(40))
    out = chunks_of(doc(text), max_tokens=5, overlap=4)
    starts = [c.start for c in out]
    assert starts == sorted(set(starts))
    assert out[-1].text.endswith("x39.")


def test_headings_split_sections_and_give_the_path():
    text = (
        "# Guide\n\nIntro text.\n\n## Install\n\nRun the installer.\n\n### Linux\n\nUse apt.\n\n"
        "## Use\n\nCall it."
    )
    d = doc(text, markdown_headings(text), title="Guide")
    out = chunks_of(d, max_tokens=50)
    assert [(c.text, c.headings) for c in out] == [
        ("Intro text.", ("Guide",)),
        ("Run the installer.", ("Guide", "Install")),
        ("Use apt.", ("Guide", "Install", "Linux")),
        ("Call it.", ("Guide", "Use")),
    ]
    assert out[2].context == "Guide > Install > Linux"
    assert out[2].embed_input() == "Guide > Install > Linux\nUse apt."


def test_markdown_headings_ignore_fenced_code():
    text = "# Top\n\n```\n# not a heading\n```\n\n## Real\n"
    assert [(h.level, h.text) for h in markdown_headings(text)] == [(1, "Top"), (2, "Real")]


def test_sections_before_first_heading_and_nesting():
    text = "pre\n\nH1\n\nbody one\n\nH2\n\nbody two"
    heads = [Heading(5, 7, 1, "H1"), Heading(19, 21, 2, "H2")]
    assert sections(doc(text, heads)) == [(0, 5, ()), (7, 19, ("H1",)), (21, len(text), ("H1", "H2"))]


def test_model_limit_caps_the_budget():
    text = " ".join(f"w{i}" for i in range(30))
    out = chunks_of(doc(text), max_tokens=100, model_max=12)
    assert max(c.tokens for c in out) == 10  # 12 minus the two special tokens
    assert len(out) == 3


def test_context_line_does_not_repeat_the_title():
    assert context_line("Guide", ("Guide", "Install")) == "Guide > Install"
    assert context_line("", ("A", "B")) == "A > B"


def test_split_spans_trims_whitespace():
    assert split_spans("  a  \n\n b ", 0, 10, re.compile(r"\n\n")) == [(2, 3), (8, 9)]


def test_chunk_ids_are_deterministic_and_bounded():
    assert chunk_id("doc1", 3, "abcdef0123456789") == "doc1:3:abcdef012345"
    long_id = chunk_id("x" * 600, 0, "f" * 64)
    assert len(long_id) < 512 and long_id == chunk_id("x" * 600, 0, "f" * 64)


@pytest.fixture(scope="module")
def real_counter():
    from transformers import AutoTokenizer

    from esrag.embedder import resolve_model_path
    from ingest.chunking import HFTokenCounter

    return HFTokenCounter(AutoTokenizer.from_pretrained(str(resolve_model_path("all-MiniLM-L6-v2", None))))


def test_real_tokenizer_chunks_fit_and_match_offsets(real_counter):
    paragraph = " ".join(["Elasticsearch stores quantised vectors in an HNSW graph."] * 12)
    text = "\n\n".join([paragraph, "Short closing paragraph.", "x" * 3000 + " tail words here"])
    d = doc(text)
    out = chunk_document(d, real_counter, max_tokens=40, overlap=8, min_tokens=0,
                         model_max_tokens=256)
    for c in out:
        assert text[c.start : c.end] == c.text
        assert real_counter.count([c.text]) == [c.tokens]
        assert c.tokens <= 40
    assert out[-1].text.endswith("tail words here")


def adversarial(size: int) -> str:
    """Long whitespace runs, blank-line runs, "x  " lines and punctuation runs (about ``size`` chars)."""
    block = (
        "start" + " " * 400_000 + "end.\n"
        + "x  \n" * 50_000
        + "\n \n\t\n" * 20_000
        + "Why?!" * 10_000 + " " + "." * 50_000 + "\n"
        + ". " * 50_000 + "\n"
        + '"' * 20_000 + ")" * 20_000 + "\n"
        + "a" + " \t " * 100_000 + "\n b"
    )
    return (block * (size // len(block) + 1))[:size]


@pytest.mark.timeout(120)
def test_adversarial_whitespace_and_punctuation_chunk_in_bounded_time():
    # 3 MB; the old sentence splitter rescanned each whitespace run from every position
    # in it (one 400,000-space run alone: about 40 minutes)
    text = adversarial(3_000_000)
    out = chunks_of(doc(text), max_tokens=200, overlap=32)
    for c in out[:50] + out[-50:]:
        assert text[c.start : c.end] == c.text
        assert c.text == c.text.strip()
    assert out[0].text.startswith("start")
    # every non-blank character lies in some chunk: nothing is dropped
    covered, pos = 0, 0
    for c in out:
        span = text[max(pos, c.start):c.end]
        covered += len(span) - sum(ch.isspace() for ch in span)
        pos = max(pos, c.end)
    assert covered == len(text) - sum(ch.isspace() for ch in text)


@pytest.mark.timeout(120)
def test_adversarial_text_with_the_real_tokenizer(real_counter):
    text = adversarial(1_000_000)
    out = chunk_document(doc(text), real_counter, max_tokens=200, overlap=32, min_tokens=16,
                         model_max_tokens=256)
    assert out and out[0].text.startswith("start")
    # no chunk under the minimum; a merged one exceeds the budget by less than the minimum
    assert all(16 <= c.tokens <= 200 + 15 for c in out)


@pytest.mark.timeout(60)
def test_markdown_heading_with_long_runs_is_linear():
    # a heading line with a 200,000-character run of " #" that does not end it, then
    # 40,000 fenced blocks each holding a "# ..." line (looked up per heading before)
    fences = "```\n# not a heading\n```\n" * 40_000
    text = "# Title" + " #" * 100_000 + " end\n\nbody\n" + fences + "## Last #"
    heads = markdown_headings(text)
    assert [(h.level, h.text) for h in heads] == [(1, "Title" + " #" * 100_000 + " end"), (2, "Last")]


def test_sentences_split_at_newlines_with_surrounding_whitespace():
    text = "one two three four   \n   five six seven eight. nine ten"
    out = chunks_of(doc(text), max_tokens=4)
    assert [c.text for c in out] == ["one two three four", "five six seven eight.", "nine ten"]


def test_chunking_past_its_deadline_raises():
    import time

    from ingest.chunking import ChunkingTimeout

    with pytest.raises(ChunkingTimeout):
        chunk_document(doc("a b c. d e f."), WordCounter(), max_tokens=4, overlap=0, min_tokens=0,
                       model_max_tokens=512,
                       deadline=time.monotonic() - 1)


# -- no title-only or near-empty chunks (ESRAG_CHUNK_MIN_TOKENS) --------------------------------

DOCBOOK = Path(__file__).resolve().parents[1] / "data" / "docbook" / "ch09.en.html"
CH9 = "Chapter 9. Keeping the system up-to-date"


def test_docbook_page_has_no_title_only_chunk():
    from ingest.loaders import load_file

    d = next(iter(load_file(DOCBOOK, 10**7)))
    assert d.text.startswith(f"{CH9}\n\nTable of Contents")  # the navheader's copy of the title is gone
    assert "Prev" not in d.text and "Home" not in d.text  # and so is the navfooter
    toc = ("Table of Contents\n\n9.1. Upgrades\n\n9.1.1. Security updates\n\n9.1.2. Point releases\n\n"
           "9.2. Automatic updates")
    security = ("Security updates are published for the stable release as soon as a fix is ready, and the "
                "package manager installs them like any other upgrade.\n\nRun the upgrade command after "
                "refreshing the package lists; it replaces every installed package that has a newer version.")
    auto = ("The unattended upgrade service downloads and installs security updates every day; its log lists "
            "each package it changed and when.")
    # without a minimum: the table of contents (14 tokens) and a cross-reference (3) stand alone
    old = [c.text for c in chunks_of(d, max_tokens=200, overlap=32)]
    assert old == [toc, security, "See Section 9.2.", auto]
    out = chunks_of(d, max_tokens=200, overlap=32, min_tokens=16)
    # each small section joins the next one with a body, its own heading included
    assert [(c.text, c.headings[1:], c.tokens) for c in out] == [
        (f"{CH9}\n\n{toc}\n\n9.1. Upgrades\n\n9.1.1. Security updates\n\n{security}",
         ("9.1. Upgrades", "9.1.1. Security updates"), 69),
        (f"9.1.2. Point releases\n\nSee Section 9.2.\n\n9.2. Automatic updates\n\n{auto}",
         ("9.2. Automatic updates",), 29),
    ]
    for c in out:
        assert c.headings[0] == CH9
        assert d.text[c.start:c.end] == c.text


def test_title_left_before_the_first_heading_joins_the_following_text():
    # what a page whose navigation header is not recognised gives: the title alone, then the chapter
    body = "Keep the system current with the package manager's upgrade command."
    text = f"{CH9}\n\nPrev Next\n\n{CH9}\n\n{body}"
    heads = [Heading(len(f"{CH9}\n\nPrev Next\n\n"), len(f"{CH9}\n\nPrev Next\n\n{CH9}"), 1, CH9)]
    d = doc(text, heads, title=CH9)
    assert [c.text for c in chunks_of(d, max_tokens=40)] == [
        f"{CH9}\n\nPrev Next", body,
    ]
    out = chunks_of(d, max_tokens=40, min_tokens=16)
    assert [(c.text, c.headings, c.context, c.start, c.end) for c in out] == [
        (text, (CH9,), CH9, 0, len(text)),
    ]


def test_heading_without_body_joins_the_following_section_but_a_parent_heading_stays_context():
    text = ("# Guide\n\n## Install\n\n## Upgrade\n\none two three four five six\n\n## Remove\n\n"
            "seven eight nine ten eleven")
    d = doc(text, markdown_headings(text))
    out = chunks_of(d, max_tokens=20, min_tokens=4)
    # "Guide" has no body but its subsections carry it; "Install" has none and joins "Upgrade"
    assert [(c.text, c.headings) for c in out] == [
        ("## Install\n\n## Upgrade\n\none two three four five six", ("Guide", "Upgrade")),
        ("seven eight nine ten eleven", ("Guide", "Remove")),
    ]
    old = [c.text for c in chunks_of(d, max_tokens=20)]
    assert old == ["one two three four five six", "seven eight nine ten eleven"]


def test_small_sections_chain_and_the_last_one_joins_the_one_before():
    text = ("## A\n\none two three four five six seven eight\n\n## B\n\nsix\n\n## C\n\nseven eight\n\n"
            "## D\n\nnine ten eleven twelve\n\n## E\n\nend")
    d = doc(text, markdown_headings(text))
    out = chunks_of(d, max_tokens=30, min_tokens=8)
    # B (1 token; 3 with its heading) joins C: 7, still small, so both join D; E, the last
    # section and small, joins D, the one before it
    assert [(c.text, c.headings, c.tokens) for c in out] == [
        ("one two three four five six seven eight", ("A",), 8),
        ("## B\n\nsix\n\n## C\n\nseven eight\n\n## D\n\nnine ten eleven twelve\n\n## E\n\nend", ("D",), 16),
    ]
    for c in out:
        assert text[c.start:c.end] == c.text
    assert len(chunks_of(d, max_tokens=30)) == 5


def test_a_small_tail_merges_back_and_a_small_head_takes_the_next_paragraph():
    text = "aa bb cc dd ee ff gg hh\n\nii jj\n\nkk"
    assert [c.text for c in chunks_of(doc(text), max_tokens=8)] == ["aa bb cc dd ee ff gg hh", "ii jj\n\nkk"]
    out = chunks_of(doc(text), max_tokens=8, min_tokens=4)
    assert [(c.text, c.tokens) for c in out] == [(text, 11)]  # 8 + a tail of 3: over the budget by 3
    text = "aa\n\nbb cc dd ee ff gg hh ii\n\njj kk ll mm nn"
    assert [c.text for c in chunks_of(doc(text), max_tokens=8)][0] == "aa"
    out = chunks_of(doc(text), max_tokens=8, min_tokens=4)
    assert [(c.text, c.tokens) for c in out] == [
        ("aa\n\nbb cc dd ee ff gg hh ii", 9), ("jj kk ll mm nn", 5),
    ]


def test_merging_never_goes_past_what_the_model_embeds():
    # room for 10 tokens of text: the 3-token tail cannot join a full chunk of 9 and stays alone
    text = "aa bb cc dd ee ff gg hh ii\n\njj kk ll"
    out = chunks_of(doc(text), max_tokens=9, min_tokens=4, model_max=12)
    assert [c.text for c in out] == ["aa bb cc dd ee ff gg hh ii", "jj kk ll"]
    out = chunks_of(doc(text), max_tokens=9, min_tokens=4, model_max=14)
    assert [c.text for c in out] == [text]


def test_a_whole_document_under_the_minimum_is_one_chunk():
    out = chunks_of(doc("Yes."), min_tokens=16)
    assert [(c.text, c.start, c.end) for c in out] == [("Yes.", 0, 4)]


def test_the_minimum_is_at_most_half_the_budget():
    # ESRAG_CHUNK_MAX_TOKENS=8 with the default minimum of 16: 4 is used, chunks of 8 stay whole
    text = "aa bb cc dd ee ff gg hh\n\nii jj kk ll mm\n\nnn oo pp"
    out = chunks_of(doc(text), max_tokens=8, min_tokens=16)
    assert [c.text for c in out] == ["aa bb cc dd ee ff gg hh", "ii jj kk ll mm\n\nnn oo pp"]

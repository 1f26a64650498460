import pytest

from query.citations import NOT_FOUND, CitationParser, ReasoningFilter, build_messages
from query.filters import FilterError, filter_clauses, parse_filters
from query.hits import Hit


def hits(n):
    return [Hit(chunk_id=f"c{i}", doc_id=f"d{i}", source=f"s{i}", title="", text=f"text {i}", score=1.0,
                start=10 * i, end=10 * i + 5, chunk_no=i) for i in range(1, n + 1)]


def run(parser, pieces):
    out = "".join(parser.feed(p) for p in pieces)
    return out + parser.close()


def test_citation_split_across_tokens_is_kept():
    parser = CitationParser(hits(12))
    emitted = [parser.feed("Paris is the capital [1"), parser.feed("2]."), parser.close()]
    assert emitted == ["Paris is the capital", " [12].", ""]
    assert parser.used == [12] and parser.removed == 0
    c = parser.citations()[0]
    assert (c.n, c.doc_id, c.chunk_id, c.source, c.start, c.end) == (12, "d12", "c12", "s12", 120, 125)


def test_unknown_numbers_removed_and_counted():
    parser = CitationParser(hits(2))
    assert run(parser, ["A [1", "]", " B [", "7]. C [2, 9]", " D [0]."]) == "A [1] B. C [2] D."
    assert parser.used == [1, 2]
    assert parser.removed == 3


def test_character_by_character_stream_matches_whole():
    text = "X [2][1] and [3]. Y [1,2]."
    whole = run(CitationParser(hits(2)), [text])
    parser = CitationParser(hits(2))
    assert run(parser, list(text)) == whole == "X [2][1] and. Y [1][2]."
    assert parser.used == [2, 1] and parser.removed == 1


def test_brackets_that_are_not_citations_pass_through():
    assert run(CitationParser(hits(1)), ["list[str", "] and [a]"]) == "list[str] and [a]"


def test_reasoning_hidden_from_stream():
    f = ReasoningFilter()
    pieces = ["<reas", "oning>think ", "hard</reason", "ing>\nThe answer [1]."]
    assert "".join(f.feed(p) for p in pieces) + f.close() == "The answer [1]."
    assert f.reasoning == "think hard"
    g = ReasoningFilter()
    assert "".join(g.feed(p) for p in ["No ", "reasoning"]) + g.close() == "No reasoning"
    assert g.reasoning == ""


def test_every_reasoning_block_is_hidden():
    # what Qwen 0.5B wrote with its answer opened inside a block: more blocks after the first
    f = ReasoningFilter()
    f.feed("<reasoning>")
    pieces = [" Use a set. </reasoning>\n<reas", "oning> Or a dict. </reasoning>\nA set drops ",
              "duplicates [1].<", "/reasoning> Done. <reasoning> cut off"]
    assert "".join(f.feed(p) for p in pieces) + f.close() == "A set drops duplicates [1]. Done. "
    assert f.reasoning == "Use a set.\n\nOr a dict.\n\ncut off"


def test_text_that_only_looks_like_a_tag_is_kept():
    f = ReasoningFilter()
    assert f.feed("a < b and x <re") == "a < b and x "
    assert f.feed("d>") == "<red>"
    assert f.feed("list ") + f.close() == "list " and f.reasoning == ""


def test_a_tag_cut_off_by_the_token_cap_is_dropped():
    # Qwen 0.5B's whole answer once, its 512 tokens spent on reasoning: "<reasoning" and no more
    # (its one block, with nothing after it, is then the answer)
    f = ReasoningFilter()
    f.feed("<reasoning>")
    assert f.feed(" cites [1] </reasoning>\n\n<reasoning") + f.close() == "cites [1]"
    assert f.reasoning == ""
    g = ReasoningFilter()
    assert g.feed("Done [1]. </reas") + g.close() == "Done [1]. "


def _opened(*pieces: str) -> tuple[ReasoningFilter, str]:
    """A filter whose stream began inside a block (the local models' prompt), fed ``pieces``."""
    f = ReasoningFilter()
    f.feed("<reasoning>")
    return f, "".join(f.feed(p) for p in pieces)


def test_with_no_answer_outside_the_blocks_the_last_block_is_the_answer():
    # Qwen 0.5B on chatterbot, its answer opened inside a block: the answer, then end of stream
    f, streamed = _opened("A chat bot is a program [1].")
    assert (streamed, f.close(), f.reasoning) == ("", "A chat bot is a program [1].", "")
    # cut off by the token cap: tags inside it, and the start of one at its end, are not text
    g, _ = _opened("China [10]. <reasoning> China [10]. </rea")
    assert g.close() == "China [10]. China [10]."
    # with an answer outside the blocks, an unclosed block stays reasoning
    h, streamed = _opened("think </reasoning> Yes [1]. <reasoning> more")
    assert (streamed, h.close(), h.reasoning) == ("Yes [1]. ", "", "think\n\nmore")
    # an empty unclosed block is no answer; the block before it is
    e, streamed = _opened("Think. </reasoning> <reasoning> The name is in __name__ [1]. </reasoning>",
                          "<reasoning> ")
    assert (streamed, e.close(), e.reasoning) == ("", "The name is in __name__ [1].", "Think.")
    assert ReasoningFilter().close() == ""


def test_prompt_numbers_passages_and_asks_for_citations():
    msgs = build_messages("Why?", hits(2), reasoning=True)
    assert msgs[0]["role"] == "system" and NOT_FOUND in msgs[0]["content"]
    assert "<reasoning>" in msgs[0]["content"]
    assert msgs[1]["content"].startswith("Passages:\n[1] (s1) text 1\n[2] (s2) text 2\n\nQuestion: Why?")


def test_filters_parse_and_validate():
    assert parse_filters(["doc_id=a", "meta.team=db=x"]) == {"doc_id": "a", "meta.team": "db=x"}
    assert filter_clauses({"source": "s", "doc_id": "d"}) == [{"term": {"doc_id": "d"}},
                                                              {"term": {"source": "s"}}]
    with pytest.raises(FilterError, match="cannot filter on 'text'"):
        parse_filters(["text=x"])
    with pytest.raises(FilterError, match="is not key=value"):
        parse_filters(["doc_id"])
    with pytest.raises(FilterError, match="given more than once"):
        parse_filters(["doc_id=a", "doc_id=b"])


def test_the_decline_in_other_words_is_recognised_and_an_answer_is_not():
    from query.citations import NOT_FOUND, is_decline

    for text in (NOT_FOUND, "The passage does not contain the answer.",
                 "the passages do not contain the answer",
                 "The provided passages do not mention how to do this [2].",
                 "I'm sorry, but the context does not include that information.", "Passages do not say."):
        assert is_decline(text), text
    for text in ("The passages do not contain the answer. Python is a language [1].",
                 "Python is a language [1].", "The file does not contain a newline [2].", ""):
        assert not is_decline(text), text

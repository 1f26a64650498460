"""Post-hoc attribution of uncited answer sentences (pure logic, the overlap support measure)."""

from query.attribution import attribute_citations, best_passage
from query.citations import NOT_FOUND, to_citation
from query.generation import Answer, verify_answer
from query.hits import Hit
from query.verify import overlap_support

PASSAGES = [
    "The with statement closes the file when the block ends, even if an exception is raised.",
    "To read a file line by line, loop over the file object: for line in f: print(line). "
    "This is memory efficient and fast.",
    "Tuples are immutable sequences.",
]
ANSWER = ("You can loop over the file object to read it line by line. "
          "Files opened in a with block are closed when it ends [1]. Bananas are yellow.")
ATTRIBUTED = ("You can loop over the file object to read it line by line [2]. "
              "Files opened in a with block are closed when it ends [1]. Bananas are yellow.")


def hits() -> list[Hit]:
    return [Hit(chunk_id=f"d{n}#0", doc_id=f"d{n}", source=f"d{n}.txt", title="", text=text, score=1.0,
                start=0, end=len(text), chunk_no=0) for n, text in enumerate(PASSAGES, start=1)]


def settings(**kw):
    from esrag.settings import load_settings

    return load_settings(citation_check="overlap", citation_min_support=0.5, **kw)


def test_supported_uncited_sentence_gets_its_passage_and_the_rest_is_untouched():
    out = attribute_citations(ANSWER, PASSAGES, overlap_support, 0.5)
    assert out.answer == ATTRIBUTED
    assert out.added == 1


def test_citation_goes_before_the_closing_punctuation_or_at_the_end():
    assert attribute_citations("Tuples are immutable!", PASSAGES, overlap_support, 0.5).answer == \
        "Tuples are immutable [3]!"
    assert attribute_citations("Tuples are immutable sequences", PASSAGES, overlap_support, 0.5).answer == \
        "Tuples are immutable sequences [3]"
    two_lines = "Tuples are immutable:\n`t = (1, 2)`"
    assert attribute_citations(two_lines, PASSAGES, overlap_support, 0.5).answer == \
        "Tuples are immutable [3]:\n`t = (1, 2)`"


def test_best_supporting_passage_wins_and_ties_go_to_the_first():
    # "file" is in passages 1 and 2 (1/4 of the claim's words); "loop", "line", "read" only in 2
    assert best_passage("read the file line by line in a loop", PASSAGES, overlap_support, 0.5) == 2
    both = ["closes the file", "the file is closed"]
    assert best_passage("Close the file.", both, overlap_support, 0.5) == 1
    assert best_passage("Bananas are yellow.", PASSAGES, overlap_support, 0.5) is None


def test_the_decline_sentence_is_never_attributed():
    passages = ["The passages do not contain the answer: none of these passages do."]
    out = attribute_citations(NOT_FOUND, passages, overlap_support, 0.5)
    assert (out.answer, out.added) == (NOT_FOUND, 0)


def test_verify_answer_numbers_citations_as_the_text_cites_them():
    answer = Answer(answer=ANSWER, citations=[to_citation(1, hits()[0])], backend="openai")
    verify_answer(settings(), answer, hits())
    assert answer.answer == ATTRIBUTED
    assert [(c.n, c.doc_id) for c in answer.citations] == [(2, "d2"), (1, "d1")]
    assert (answer.attributed_citations, answer.unsupported_citations, answer.faithfulness) == (1, 0, 0.6667)
    assert answer.to_dict()["attributed_citations"] == 1


def test_verify_answer_without_attribution_keeps_only_what_the_model_cited():
    answer = Answer(answer=ANSWER, citations=[to_citation(1, hits()[0])], backend="openai")
    verify_answer(settings(citation_attribution=False), answer, hits())
    assert answer.answer == ANSWER
    assert [(c.n, c.doc_id) for c in answer.citations] == [(1, "d1")]
    assert (answer.attributed_citations, answer.faithfulness) == (0, 0.3333)


def test_an_uncited_answer_is_declined_without_attribution_and_cited_with_it():
    text = "You can loop over the file object to read it line by line."
    on = Answer(answer=text, citations=[], backend="local")
    verify_answer(settings(), on, hits())
    assert (on.answer, [c.n for c in on.citations], on.attributed_citations) == (
        "You can loop over the file object to read it line by line [2].", [2], 1)
    off = Answer(answer=text, citations=[], backend="local")
    verify_answer(settings(citation_attribution=False), off, hits())
    assert (off.answer, off.citations, off.attributed_citations) == (NOT_FOUND, [], 0)


def test_a_wrong_citation_is_dropped_not_replaced():
    # the sentence cites passage 3, which does not support it: the check drops [3]; attribution
    # only acts on sentences the model left uncited, so the sentence ends uncited
    answer = Answer(answer="You can loop over the file object to read it line by line [3].", citations=[],
                    backend="local")
    verify_answer(settings(), answer, hits())
    assert (answer.answer, answer.unsupported_citations, answer.attributed_citations) == (NOT_FOUND, 1, 0)


def test_markers_around_no_words_support_nothing():
    # Qwen 0.5B's answer at its token cap: a run of markers and a bracket; and a stray "..."
    for text, n in (("[1] [2] [3] [", 3), ("... [2]", 1)):
        answer = Answer(answer=text, citations=[], backend="local")
        verify_answer(settings(), answer, hits())
        assert (answer.answer, answer.citations, answer.unsupported_citations, answer.faithfulness) == (
            NOT_FOUND, [], n, 0.0)
    out = attribute_citations("...", PASSAGES, overlap_support, 0.5)
    assert (out.answer, out.added) == ("...", 0)


class _BagOfWords:
    """A stand-in embedder with the Embedder interface: unit vectors of word counts."""

    def __init__(self) -> None:
        self.calls = 0

    def encode_document(self, texts):
        import numpy as np

        vocab = sorted({w for p in PASSAGES for w in p.lower().split()})
        self.calls += 1
        rows = np.array([[t.lower().split().count(w) for w in vocab] for t in texts], dtype=float)
        return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-9)


def test_embedding_support_uses_the_embedder_interface_and_embeds_each_passage_once():
    from query.verify import embedding_support

    embedder = _BagOfWords()
    support = embedding_support(embedder)
    assert support("tuples are immutable sequences.", PASSAGES[2]) == 1.0
    assert support("bananas", PASSAGES[2]) == 0.0
    assert embedder.calls == 3  # the passage once, each claim once
    out = attribute_citations("tuples are immutable sequences.", PASSAGES, support, 0.5)
    assert (out.answer, out.added) == ("tuples are immutable sequences [3].", 1)


def test_a_sentence_cited_before_it_starts_is_not_attributed_again():
    out = attribute_citations("[3] Tuples are immutable sequences.", PASSAGES, overlap_support, 0.5)
    assert (out.answer, out.added) == ("[3] Tuples are immutable sequences.", 0)

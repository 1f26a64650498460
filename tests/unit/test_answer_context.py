"""Context packing and citation checks (pure logic)."""

from query.context import is_navigation, merge_overlapping, pack
from query.hits import Hit
from query.verify import check_citations, overlap_support, sentence_spans, split_sentences

TOC = """Contents
General Python FAQ
What is Python?
What is the Python Software Foundation?
Are there copyright restrictions on the use of Python?
Why was Python created in the first place?
What is Python good for?"""

PROSE = ("Python is an interpreted, interactive, object-oriented programming language. It incorporates "
         "modules, exceptions, dynamic typing, very high level dynamic data types, and classes.")


def hit(doc, start, end, text=None, score=1.0, chunk=None):
    return Hit(chunk_id=chunk or f"{doc}#{start}", doc_id=doc, source=f"{doc}.html", title="",
               text=text if text is not None else "x" * (end - start), score=score, start=start, end=end,
               chunk_no=0)


def words(text):
    return len(text.split())


def test_navigation_is_recognised_and_prose_is_not():
    assert is_navigation(TOC)
    assert not is_navigation(PROSE)
    assert not is_navigation("A heading\n" + PROSE)
    # a short list of steps that are sentences is not navigation
    assert not is_navigation("Open the file.\nRead a line.\nClose it.\nDone.")
    # nor is code (Python docs' examples are short lines without sentence ends)
    assert not is_navigation("ref = function(args).mydict[index][index]\nref.a = 21\nref.b = 42\nref.c = 63")
    assert not is_navigation('with open("f") as fh:\n    for line in fh:\n        print(line)\n    pass')


def test_overlapping_chunks_of_one_document_merge_at_the_best_rank():
    doc = "0123456789abcdefghij"
    a = hit("d", 5, 15, doc[5:15], score=0.9, chunk="d#1")
    b = hit("e", 0, 4, "eeee", score=0.8)
    c = hit("d", 0, 8, doc[0:8], score=0.5, chunk="d#0")
    d = hit("d", 15, 20, doc[15:20], score=0.4, chunk="d#2")  # touches a's end
    merged = merge_overlapping([a, b, c, d])
    assert [(h.chunk_id, h.start, h.end, h.text, h.score) for h in merged] == [
        ("d#1", 0, 20, doc, 0.9), ("e#0", 0, 4, "eeee", 0.8)]


def test_chunks_with_a_gap_stay_apart():
    merged = merge_overlapping([hit("d", 0, 5), hit("d", 6, 9)])
    assert [(h.start, h.end) for h in merged] == [(0, 5), (6, 9)]


def test_pack_best_first_by_tokens_skipping_what_does_not_fit():
    hits = [hit("a", 0, 0, "one two three four"), hit("nav", 0, 0, TOC), hit("b", 0, 0, "w " * 10),
            hit("c", 0, 0, "five six")]
    packed = pack(hits, words, budget=7)
    assert [h.doc_id for h in packed] == ["a", "c"]  # nav dropped, b (10 tokens) skipped
    assert [h.doc_id for h in pack(hits, words, budget=100, max_passages=2)] == ["a", "b"]


def test_pack_cuts_a_long_best_passage_instead_of_giving_nothing():
    packed = pack([hit("a", 100, 140, "word " * 8)], words, budget=4)
    assert len(packed) == 1 and packed[0].text == "word word word word " and packed[0].end == 120


def test_sentence_spans_keep_citations_with_their_sentence():
    text = "Open the file [1]. Then iterate. [2] Done!\nNext line"
    assert [text[a:b] for a, b in sentence_spans(text)] == [
        "Open the file [1].", "Then iterate. [2]", "Done!", "Next line"]


def test_unsupported_citations_are_dropped_and_counted():
    passages = ["To read a file line by line, iterate over the open file object.",
                "Bake the bread at 220 degrees."]
    answer = "Iterate over the open file object to read lines [1][2]. Bread is baked at 220 degrees [1]."
    checked = check_citations(answer, passages, overlap_support, 0.5)
    assert checked.answer == ("Iterate over the open file object to read lines [1]. "
                              "Bread is baked at 220 degrees.")
    assert checked.kept == [1] and checked.unsupported == 2
    assert (checked.sentences, checked.supported, checked.faithfulness) == (2, 1, 0.5)


def test_check_without_dropping_only_measures():
    passages = ["Bake the bread at 220 degrees."]
    answer = "Rust has owners [1]."
    checked = check_citations(answer, passages, overlap_support, 0.5, drop=False)
    assert checked.answer == answer and checked.unsupported == 1 and checked.supported == 0


def test_overlap_support_uses_stems_and_ignores_stop_words():
    assert overlap_support("The files are closed", "closing a file") == 1.0
    assert overlap_support("It is.", "anything") == 1.0
    assert overlap_support("gluon confinement", "bread") == 0.0


def test_a_citation_before_its_sentence_belongs_to_that_sentence():
    text = "[1] Freeze is a tool. It needs Tcl [2].\n[3]\nNext line"
    assert [text[a:b] for a, b in sentence_spans(text)] == [
        "[1] Freeze is a tool.", "It needs Tcl [2].\n[3]", "Next line"]


FREEZE = "Freeze is a tool to create stand-alone applications."


def test_a_leading_citation_is_checked_and_moved_to_the_end_of_its_sentence():
    checked = check_citations("[1] Freeze is a tool to create stand-alone applications.",
                              [FREEZE, "Bake the bread at 220 degrees."], overlap_support, 0.5)
    assert checked.answer == "Freeze is a tool to create stand-alone applications [1]."
    assert (checked.kept, checked.unsupported, checked.sentences, checked.supported) == ([1], 0, 1, 1)


def test_a_leading_citation_the_passage_does_not_support_is_dropped():
    checked = check_citations("[2] Freeze is a tool to create stand-alone applications.",
                              [FREEZE, "Bake the bread at 220 degrees."], overlap_support, 0.5)
    assert checked.answer == "Freeze is a tool to create stand-alone applications."
    assert (checked.kept, checked.unsupported, checked.supported) == ([], 1, 0)


# tutorial/inputoutput.html as the HTML loader gives it: a session, a paragraph, a code block
SESSION = ("while a blank line is represented by '\\n', a string containing only a single newline.\n\n"
           ">>> f.readline()\n'This is the first line of the file.\\n'\n>>> f.readline()\n''\n\n"
           "For reading lines from a file, you can loop over the file object. This is memory efficient, "
           "fast, and leads to simple code:\n\n>>> for line in f:\n...     print(line, end='')\n...\n"
           "This is the first line of the file.\n")


def test_prose_sentences_leave_out_sessions_quoted_output_and_symbols():
    from query.verify import prose_sentences

    assert prose_sentences(SESSION) == [
        "while a blank line is represented by '\\n', a string containing only a single newline.",
        "For reading lines from a file, you can loop over the file object.",
        "This is memory efficient, fast, and leads to simple code:",
        "This is the first line of the file."]
    assert prose_sentences("{[(1, 2)]} == x.\n>>> f()\nRead it.") == ["Read it."]
    # one line (a corpus stored flattened): nothing tells code from prose, every sentence stays
    flat = "Read it. >>> f.read() '' Then stop. {[(1, 2), (3, 4)]} == x."
    assert prose_sentences(flat) == split_sentences(flat) == [flat]


def test_a_citation_ends_its_sentence_whatever_case_follows():
    text = "Trading shares. [3] the stockholders. [5] Use list[0] here [1]."
    assert [text[a:b] for a, b in sentence_spans(text)] == [
        "Trading shares. [3]", "the stockholders. [5]", "Use list[0] here [1]."]
    # chatterbot's extracted answer: each passage's sentence is supported by that passage
    passages = ["Do you feel that the stock market is going up?", "x", "Trading shares.", "y",
                "the stockholders."]
    answer = "Trading shares. [3] the stockholders. [5]"
    checked = check_citations(answer, passages, overlap_support, 0.5)
    assert (checked.answer, checked.unsupported, checked.supported) == (answer, 0, 2)

"""Query terms and stems for the BM25 leg."""

from __future__ import annotations

from esrag.stemming import query_terms, stem_text


def test_question_words_are_dropped():
    assert query_terms("How do I read a file line by line?", "english") == "read file line line"


def test_only_stop_words_keeps_the_query():
    assert query_terms("what is it", "english") == "what is it"


def test_other_languages_untouched():
    assert query_terms("wie lese ich eine Datei", "german") == "wie lese ich eine Datei"


def test_stems():
    assert stem_text("Reclaims running Dogs", "english") == "reclaim run dog"

"""Language stemming done in Python, for the ``text_stemmed`` field and the queries against it."""

from __future__ import annotations

import re
from functools import lru_cache

import Stemmer

_TOKEN = re.compile(r"\w+", re.UNICODE)


@lru_cache(maxsize=8)
def _stemmer(language: str) -> Stemmer.Stemmer:
    try:
        return Stemmer.Stemmer(language)
    except KeyError:
        from esrag.errors import ConfigError

        raise ConfigError(
            f"ESRAG_STEM_LANGUAGE {language!r} is not supported; one of: "
            + ", ".join(sorted(Stemmer.algorithms()))
        ) from None


def stem_text(text: str, language: str) -> str:
    """Lower-cased ``\\w+`` tokens of ``text``, stemmed for ``language``, joined by spaces."""
    tokens = _TOKEN.findall(text.lower())
    return " ".join(_stemmer(language).stemWords(tokens))


def query_terms(text: str, language: str) -> str:
    """A question reduced to its content words for BM25: English stop words (scikit-learn's
    list) are dropped; other languages, and queries made only of stop words, stay as they are."""
    if language != "english":
        return text
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    kept = [t for t in _TOKEN.findall(text) if t.lower() not in ENGLISH_STOP_WORDS]
    return " ".join(kept) if kept else text

"""Adapter from the query side's answer generation to answer_quality's ``answer_fn``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from esrag.errors import EsragError
from esrag.settings import Settings


def answer_fn(settings: Settings, *, embedder: Any = None) -> Callable[[str], Mapping[str, Any]]:
    """``question -> {"answer", "citations": [{"doc_id", ...}]}`` using `esrag ask`'s function."""
    try:
        from query.generate import answer  # type: ignore[attr-defined]
    except ImportError:
        raise EsragError("answer quality needs `esrag ask` (query.generate.answer), not installed") from None

    def run(question: str) -> Mapping[str, Any]:
        result = answer(settings, question, embedder=embedder)
        return result if isinstance(result, Mapping) else result.to_dict()

    return run

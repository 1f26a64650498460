"""Adapter from the query side's answer generation to answer_quality's ``answer_fn``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from esrag.errors import EsragError
from esrag.settings import Settings


def answer_fn(settings: Settings, *, embedder: Any = None) -> Callable[[str], Mapping[str, Any]]:
    """``question -> {"answer", "citations": [{"doc_id", ...}]}`` using `esrag ask`'s function."""
    try:
        from query.generation import ask
    except ImportError:
        raise EsragError("answer quality needs `esrag ask` (query.generation.ask), not installed") from None

    def run(question: str) -> Mapping[str, Any]:
        return ask(settings, question, embedder=embedder).to_dict()

    return run

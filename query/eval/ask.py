"""Adapter from the query side's answer generation to answer_quality's ``answer_fn``."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

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


def sample_answers(answers: Mapping[str, Sequence[str]], n: int | None,
                   seed: int) -> Mapping[str, Sequence[str]]:
    """``n`` of the queries with reference answers, drawn with ``seed`` (all when ``n`` is None)."""
    if n is None or n >= len(answers):
        return answers
    keep = set(random.Random(seed).sample(sorted(answers), n))
    return {q: refs for q, refs in answers.items() if q in keep}


def reference_similarity(settings: Settings) -> Callable[[str, Sequence[str]], float]:
    """``(answer, references) -> best cosine`` with all-mpnet-base-v2, the strongest packaged embedder.

    A cosine of mean-pooled sentence embeddings does not grow with the answer's length the way
    token overlap with a long reference does.
    """
    from sentence_transformers import SentenceTransformer

    from esrag.split_models import mpnet_path

    model = SentenceTransformer(str(mpnet_path(settings)), device="cpu")
    seen: dict[str, np.ndarray] = {}  # each reference is embedded once, however many answers meet it

    def similarity(answer: str, references: Sequence[str]) -> float:
        new = [r for r in dict.fromkeys(references) if r not in seen]
        vecs = model.encode([answer, *new], normalize_embeddings=True)
        seen.update(zip(new, vecs[1:], strict=True))
        refs = np.stack([seen[r] for r in references])
        return round(float((refs @ vecs[0]).max()), 4)

    return similarity

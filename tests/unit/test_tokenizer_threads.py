"""Chunking counts tokens in the ingest loader thread while the embedder pads batches in
another: the counter must not share the embedder's tokenizer state."""

from __future__ import annotations

import threading
import time

from esrag.embedder import get_embedder
from esrag.settings import load_settings
from ingest.chunking import HFTokenCounter

TEXTS = ["word " * (i * 13 % 300 + 1) for i in range(64)]


def torch_settings():
    """The torch runtime: the race is between the counter and sentence-transformers' padding."""
    return load_settings(embed_model="all-MiniLM-L6-v2", embed_runtime="torch")


def _race(counting_tokenizer, model, seconds: float = 4.0) -> tuple[int, list[str]]:
    counter = HFTokenCounter(counting_tokenizer)
    stop = threading.Event()

    def count() -> None:
        while not stop.is_set():
            counter.count(TEXTS)

    thread = threading.Thread(target=count)
    thread.start()
    errors: list[str] = []
    batches = 0
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline and not errors:
            try:  # what SentenceTransformer.encode runs on each batch
                model.tokenize(TEXTS[batches % 7: batches % 7 + 16])
            except ValueError as exc:
                errors.append(str(exc)[:120])
            batches += 1
    finally:
        stop.set()
        thread.join(timeout=30)
    return batches, errors


def test_counting_tokenizer_is_a_private_copy():
    embedder = get_embedder(load_settings())
    assert embedder.counting_tokenizer is not embedder.tokenizer
    assert embedder.counting_tokenizer is embedder.counting_tokenizer  # made once
    assert embedder.counting_tokenizer("a test")["input_ids"] == embedder.tokenizer("a test")["input_ids"]


def test_counting_while_encoding_never_leaves_a_batch_unpadded():
    embedder = get_embedder(torch_settings())
    batches, errors = _race(embedder.counting_tokenizer, embedder.model)
    assert errors == [] and batches > 10


def test_the_ingest_pipeline_chunks_with_the_private_copy():
    """The race itself is timing-dependent (with the shared tokenizer it showed within a few
    batches here, but not on every machine), so the wiring is checked directly too."""
    from ingest.pipeline import _Run

    embedder = get_embedder(load_settings())
    run = _Run(load_settings(), None, embedder, "unused", [], None, 2000)  # type: ignore[arg-type]
    assert run.counter.tokenizer is embedder.counting_tokenizer

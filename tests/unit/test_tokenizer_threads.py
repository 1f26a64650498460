"""Chunking counts tokens in the ingest loader thread while the embedder pads batches in
another: the counter must not share the embedder's tokenizer state.

A fast tokenizer keeps its padding and truncation settings in its Rust backend, and every
call sets them anew: sentence-transformers turns padding on and then encodes the batch,
the counter's call turns it off. On a shared tokenizer a count that lands between those two
steps leaves the batch unpadded ("Unable to create tensor ... activate padding"). A race
test for that window passed with and without the fix on a loaded machine, so these tests
run the interleaving step by step instead: deterministic, and failing without the fix.
"""

from __future__ import annotations

from esrag.embedder import get_embedder
from esrag.settings import load_settings
from ingest.chunking import HFTokenCounter

TEXTS = ["word " * (i * 13 % 300 + 1) for i in range(64)]


def torch_settings():
    """The torch runtime: the race is between the counter and sentence-transformers' padding."""
    return load_settings(embed_model="all-MiniLM-L6-v2", embed_runtime="torch")


def _count_between_padding_and_encoding(embedder, counting_tokenizer) -> tuple[dict | None, int]:
    """Padding on (as encode sets it), a count from the other thread, then the batch encodes."""
    backend = embedder.tokenizer._tokenizer
    backend.enable_padding(pad_id=embedder.tokenizer.pad_token_id, pad_token=embedder.tokenizer.pad_token)
    try:
        HFTokenCounter(counting_tokenizer).count(TEXTS[:16])
        padding = backend.padding
        lengths = {len(e.ids) for e in backend.encode_batch(TEXTS[:16])}
    finally:
        backend.no_padding()
    return padding, len(lengths)


def test_counting_tokenizer_is_a_private_copy():
    embedder = get_embedder(load_settings())
    assert embedder.counting_tokenizer is not embedder.tokenizer
    assert embedder.counting_tokenizer._tokenizer is not embedder.tokenizer._tokenizer  # own backend state
    assert embedder.counting_tokenizer is embedder.counting_tokenizer  # made once
    assert embedder.counting_tokenizer("a test")["input_ids"] == embedder.tokenizer("a test")["input_ids"]


def test_a_count_mid_encode_leaves_the_batch_padded():
    embedder = get_embedder(torch_settings())
    padding, lengths = _count_between_padding_and_encoding(embedder, embedder.counting_tokenizer)
    assert padding is not None and lengths == 1  # every row padded to one length: a tensor can be made


def test_the_hazard_is_real_on_a_shared_tokenizer():
    """Without the private copy (the defect) the same step unpads the batch: this is what the
    test above would see if ``counting_tokenizer`` returned the embedder's own tokenizer."""
    embedder = get_embedder(torch_settings())
    padding, lengths = _count_between_padding_and_encoding(embedder, embedder.tokenizer)
    assert padding is None and lengths == 16  # ragged rows: "Unable to create tensor"


def test_the_ingest_pipeline_chunks_with_the_private_copy():
    from ingest.pipeline import _Run

    embedder = get_embedder(load_settings())
    run = _Run(load_settings(), None, embedder, "unused", [], None, 2000)  # type: ignore[arg-type]
    assert run.counter.tokenizer is embedder.counting_tokenizer

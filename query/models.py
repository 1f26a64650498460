"""Second-stage models shipped in packages: assembled into the cache folder on first use."""

from __future__ import annotations

from pathlib import Path

from esrag.settings import Settings
from esrag.split_models import MPNET_NAME, split_zip_model_path

__all__ = ["MPNET_NAME", "mpnet_path"]


def mpnet_path(settings: Settings) -> Path:
    """Folder of all-mpnet-base-v2 under ``settings.cache_dir``, unzipped from its split packages once."""
    return split_zip_model_path(MPNET_NAME, settings.cache_dir)

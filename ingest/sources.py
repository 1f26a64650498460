"""Which files an ingest reads: files, folders (recursive) and glob patterns."""

from __future__ import annotations

import glob
from pathlib import Path

from esrag.errors import EsragError
from esrag.settings import Settings
from ingest.loaders import SUPPORTED_SUFFIXES

_GLOB_CHARS = set("*?[")


def _walk_folder(folder: Path) -> list[Path]:
    """Supported files under ``folder``, skipping hidden files and folders."""
    found = []
    for path in folder.rglob("*"):
        rel = path.relative_to(folder).parts
        if any(part.startswith(".") for part in rel):
            continue
        if path.suffix.lower() in SUPPORTED_SUFFIXES and path.is_file():
            found.append(path)
    return sorted(found)


def expand_paths(paths: list[str], settings: Settings) -> list[Path]:
    """Files to ingest, in order and without repeats.

    A file is taken whatever its type (unsupported types are reported per file later); a
    folder contributes its supported files, recursively; a pattern (``*``, ``?``, ``[``,
    ``**``) the files it matches. Raises EsragError for a path that matches nothing.
    """
    del settings  # part of the signature the workers call; nothing here depends on it yet
    out: list[Path] = []
    seen: set[Path] = set()

    def add(path: Path) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            out.append(path)

    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            for f in _walk_folder(path):
                add(f)
        elif path.exists():
            add(path)
        elif _GLOB_CHARS & set(raw):
            matches = sorted(glob.glob(str(path), recursive=True))
            files: list[Path] = []
            for m in matches:
                mp = Path(m)
                if mp.is_dir():
                    files.extend(_walk_folder(mp))
                elif mp.is_file():
                    files.append(mp)
            if not files:
                raise EsragError(f"{raw}: no files match this pattern")
            for f in files:
                add(f)
        else:
            raise EsragError(f"{raw}: no such file or directory")
    return out

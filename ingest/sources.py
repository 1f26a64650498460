"""Which files an ingest reads: files, folders (recursive) and glob patterns."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from pathlib import Path

from esrag.errors import EsragError
from esrag.settings import Settings
from ingest.loaders import SUPPORTED_SUFFIXES

_GLOB_CHARS = set("*?[")


def _walk_folder(folder: Path) -> list[Path]:
    """Supported files under ``folder``, skipping hidden files and folders."""
    return list(walk_folder(folder))


def walk_folder(folder: Path) -> Iterator[Path]:
    """Supported files under ``folder`` one by one, in sorted path order, skipping hidden
    files and folders and not following links to folders; only one folder's listing is
    held at a time."""
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir(follow_symlinks=False):
            yield from walk_folder(Path(entry.path))
        elif Path(entry.name).suffix.lower() in SUPPORTED_SUFFIXES and entry.is_file():
            yield Path(entry.path)


def expand_paths(paths: list[str], settings: Settings) -> list[Path]:
    """Files to ingest, in order and without repeats.

    A file is taken whatever its type (unsupported types are reported per file later); a
    folder contributes its supported files, recursively; a pattern (``*``, ``?``, ``[``,
    ``**``) the files it matches. Raises EsragError for a path that matches nothing.
    """
    del settings  # part of the signature the workers call; nothing here depends on it yet
    return list(iter_paths(paths))


def iter_paths(paths: list[str], seen: set[Path] | None = None) -> Iterator[Path]:
    """The files of :func:`expand_paths` one by one (folders are walked lazily). ``seen``
    holds the resolved files yielded so far; pass one set to several calls to skip repeats
    across them. Raises EsragError for a path that matches nothing when it is reached."""
    seen = set() if seen is None else seen

    def fresh(path: Path) -> bool:
        key = path.resolve()
        if key in seen:
            return False
        seen.add(key)
        return True

    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            yield from (f for f in walk_folder(path) if fresh(f))
        elif path.exists():
            if fresh(path):
                yield path
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
            yield from (f for f in files if fresh(f))
        else:
            raise EsragError(f"{raw}: no such file or directory")

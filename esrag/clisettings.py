"""``load_settings`` for the CLI modules, importing pydantic only when a command runs.

`esrag --help` (and every command's ``--help``) thus never pays for pydantic-settings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from esrag.settings import Settings


def load_settings(**overrides: object) -> Settings:
    """:func:`esrag.settings.load_settings`, imported on first call."""
    from esrag.settings import load_settings as load

    return load(**overrides)

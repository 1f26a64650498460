"""The one place esrag sets environment switches of the libraries it loads (Hugging Face, tqdm).

Set with ``setdefault`` before the libraries are imported, so a user's own value wins.
Offline: no model hub is contacted. Quiet: no progress bars or warnings on the terminal.
"""

from __future__ import annotations

import os

OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
QUIET = {"TRANSFORMERS_VERBOSITY": "error", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "TQDM_DISABLE": "1"}


def library_switches(*, quiet: bool = False) -> None:
    """Set the offline switches (and with ``quiet`` the terminal ones) where the user has not."""
    for name, value in {**OFFLINE, **(QUIET if quiet else {})}.items():
        os.environ.setdefault(name, value)

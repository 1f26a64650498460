"""When long commands draw progress: on stderr, whenever stderr is a terminal.

Progress never goes to stdout, so ``--json`` output stays parseable while a person at the
terminal still sees that an ingest, reindex or eval is alive.
"""

from __future__ import annotations

import os
import sys


def progress_wanted() -> bool:
    """True when stderr is a terminal (and TERM is not ``dumb``)."""
    return sys.stderr.isatty() and os.environ.get("TERM") != "dumb"

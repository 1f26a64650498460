"""Keep API keys out of the access log: ``/dashboard?key=...`` puts one in a URL."""

from __future__ import annotations

import logging
import re

_KEY_PARAM = re.compile(r"([?&]key=)[^&\s]*")


def redact_query_keys(text: str) -> str:
    """``text`` with the value of every ``key=`` query parameter replaced by ``***``."""
    return _KEY_PARAM.sub(r"\1***", text)


class RedactKeys(logging.Filter):
    """A filter for uvicorn's access logger that redacts ``key=`` in the logged path."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact_query_keys(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.msg, str):
            record.msg = redact_query_keys(record.msg)
        return True


def install(logger_name: str = "uvicorn.access") -> None:
    """Add the filter to ``logger_name`` once (uvicorn logs every request there)."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, RedactKeys) for f in logger.filters):
        logger.addFilter(RedactKeys())

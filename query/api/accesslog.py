"""Keep credentials out of the server's logs: ``/dashboard?key=...`` puts a key in a URL,
and an error message may carry a service URL with its password."""

from __future__ import annotations

import logging

from esrag.redact import redact

LOGGERS = ("uvicorn.access", "uvicorn.error", "esrag")


class RedactKeys(logging.Filter):
    """A logging filter that passes every record's message and string arguments through
    :func:`esrag.redact.redact`."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True


def install(logger_names: tuple[str, ...] = LOGGERS) -> None:
    """Add the filter to each of ``logger_names`` once (uvicorn logs every request there)."""
    for name in logger_names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactKeys) for f in logger.filters):
            logger.addFilter(RedactKeys())

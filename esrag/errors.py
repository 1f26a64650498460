"""User-facing errors: each one is printed as a single line, never as a traceback."""


class EsragError(Exception):
    """An error the user can act on; its message is one line naming the file, field or service."""

    exit_code: int = 1


class ConfigError(EsragError):
    """A setting or flag has an invalid value."""

    exit_code = 2


class ServiceUnavailable(EsragError):
    """Elasticsearch or Redis cannot be reached."""

    exit_code = 3


class ModelMismatch(EsragError):
    """The index was built with another embedding model than the one configured."""

    exit_code = 4


def squash(text: str, limit: int = 300) -> str:
    """``text`` on one line: every run of whitespace (newlines too) becomes one space, cut at ``limit``."""
    return " ".join(text.split())[:limit]


def one_line(exc: BaseException, limit: int = 200, *, typed: bool = True) -> str:
    """An exception as ``"TypeName: message"`` on one line (the message cut at ``limit``).

    ``typed=False`` leaves the type name out; an exception without a message is its type name.
    """
    text = squash(str(exc), limit)
    if not text:
        return type(exc).__name__
    return f"{type(exc).__name__}: {text}" if typed else text


def es_reason(error: object, limit: int = 300) -> str:
    """An Elasticsearch error object (``{"type", "reason", "caused_by"}``), or anything else, as one line."""
    if isinstance(error, dict):
        text = f"{error.get('type', 'error')}: {error.get('reason', '')}"
        cause = error.get("caused_by")
        if isinstance(cause, dict) and cause.get("reason"):
            text += f" ({cause.get('reason')})"
        return squash(text, limit)
    return squash(str(error), limit)

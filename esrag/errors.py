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

"""Metadata filters: parsed from ``key=value`` and turned into Elasticsearch term clauses."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from esrag.errors import EsragError
from query.scope import scoped

# Top-level keyword fields of the index contract that may be filtered on.
KEYWORD_FIELDS = ("doc_id", "source", "content_type", "chunk_id", "doc_hash", "chunk_hash", "model")
_META_KEY = re.compile(r"^meta\.[A-Za-z0-9_\-][A-Za-z0-9_.\-]{0,127}$")
MAX_FILTERS = 16
MAX_VALUE_CHARS = 1024


class FilterError(EsragError):
    """A filter names an unknown field or has no value."""


def parse_filters(items: Iterable[str]) -> dict[str, str]:
    """``["key=value", ...]`` to a dict; each key at most once."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise FilterError(f"filter {item!r} is not key=value")
        if key in out:
            raise FilterError(f"filter key {key!r} given more than once")
        out[key] = value
    validate_filters(out)
    return out


def validate_filters(filters: dict[str, str]) -> None:
    """Raise FilterError unless every key is a keyword field or ``meta.<key>``, within bounds."""
    if len(filters) > MAX_FILTERS:
        raise FilterError(f"at most {MAX_FILTERS} filters are allowed, got {len(filters)}")
    for key, value in filters.items():
        if key not in KEYWORD_FIELDS and not _META_KEY.match(key):
            raise FilterError(
                f"cannot filter on {key!r}: use one of {', '.join(KEYWORD_FIELDS)} or meta.<key>"
            )
        if not isinstance(value, str) or len(value) > MAX_VALUE_CHARS:
            raise FilterError(f"filter {key!r} needs a string value of at most {MAX_VALUE_CHARS} chars")


def filter_clauses(filters: dict[str, str] | None) -> list[dict[str, Any]]:
    """Term clauses for a bool ``filter`` or a kNN ``filter`` (validated first), with the
    caller's mandatory API-key filters merged in (query/scope.py)."""
    filters = scoped(filters)
    if not filters:
        return []
    validate_filters(filters)
    return [{"term": {key: value}} for key, value in sorted(filters.items())]

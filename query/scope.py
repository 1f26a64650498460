"""The tenant scope of the request being served: mandatory filters every query body gets.

The API's auth dependency binds the caller's key filters here (:func:`bind`) before any
route code runs; :func:`query.filters.filter_clauses`, which builds the filter of every
BM25 query, every kNN query and every document read, merges them in with :func:`scoped`.
So a route gets its caller's scope by construction, whatever it calls into query/.
The binding is a context variable: it follows the request into the threads Starlette
runs sync routes and streams in (``run_in_threadpool``, ``asyncio.to_thread``), and is
empty for the CLI, evaluation and ingest (the operator's own access).

A request filter may narrow the scope (other keys, the same value) but not change a
pinned key: that is refused with :class:`ScopeError` (403), never silently widened.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from types import MappingProxyType

from esrag.errors import EsragError

_scope: ContextVar[Mapping[str, str]] = ContextVar("esrag_scope", default=MappingProxyType({}))


class ScopeError(EsragError):
    """A request filter tries to change a filter pinned by the caller's API key."""


def bind(filters: Mapping[str, str]) -> None:
    """Pin ``filters`` on every query made in the current context (a request)."""
    _scope.set(MappingProxyType(dict(filters)))


def current() -> Mapping[str, str]:
    """The filters pinned in the current context (empty outside a scoped request)."""
    return _scope.get()


def scoped(filters: Mapping[str, str] | None) -> dict[str, str]:
    """``filters`` with the current scope merged in; ScopeError when one would override it."""
    pinned = current()
    out = dict(filters or {})
    for key, value in pinned.items():
        if key in out and out[key] != value:
            raise ScopeError(f"filter {key!r} is fixed by your API key and cannot be changed")
        out[key] = value
    return out

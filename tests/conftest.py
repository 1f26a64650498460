"""Shared fixtures. Integration tests use the real Elasticsearch and Redis of `esrag up`."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

from esrag.es import make_client
from esrag.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "/tests/integration/" in str(item.path):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def es() -> Iterator[Elasticsearch]:
    """A client for the real node; fails (not skips) when none answers."""
    client = make_client(load_settings())
    try:
        client.cluster.health(wait_for_status="yellow", timeout="30s")
    except Exception as exc:  # pragma: no cover - environment problem
        pytest.fail(f"no Elasticsearch at {load_settings().es_url} ({exc!r}); run `esrag up`")
    yield client
    client.close()


@pytest.fixture()
def settings(es: Elasticsearch, tmp_path: Path) -> Iterator[Settings]:
    """Settings with a fresh alias of its own; its indices are deleted afterwards."""
    alias = f"test-{uuid.uuid4().hex[:10]}"
    yield load_settings(index=alias)
    found = es.indices.get(index=f"{alias}*", expand_wildcards="all", allow_no_indices=True)
    for name in found:
        es.indices.delete(index=name, ignore_unavailable=True)

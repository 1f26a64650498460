"""Two workers creating the same alias's index at once, on the real Elasticsearch.

Each fresh worker's first task calls ``ensure_index``: it looks the alias up, picks the next
free ``<alias>-<model>-v<N>`` name and creates that index with the alias. When another
worker's create commits between those steps, the late one must use the index that won, not
fail its task. The interleavings are forced by replaying the late worker's stale view of
the cluster (what it read before the other create committed) for its lookups.
"""

from __future__ import annotations

import pytest
from elasticsearch import Elasticsearch

import esrag.index as index_module
from esrag.embedder import ModelInfo
from esrag.index import ensure_index, new_index_name
from esrag.settings import Settings

MODEL = ModelInfo(name="race-model", dims=4)


def _indices(es: Elasticsearch, alias: str) -> list[str]:
    return sorted(es.indices.get(index=f"{alias}-*", allow_no_indices=True))


def _stale_alias_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    """The late worker's first alias lookup ran before the winner's create: no alias yet."""
    real = index_module.alias_target
    calls = {"n": 0}

    def alias_target(client: Elasticsearch, alias: str) -> str | None:
        calls["n"] += 1
        return None if calls["n"] == 1 else real(client, alias)

    monkeypatch.setattr(index_module, "alias_target", alias_target)


def test_the_late_creator_of_the_same_name_uses_the_winners_index(es: Elasticsearch, settings: Settings,
                                                                   monkeypatch: pytest.MonkeyPatch):
    name = new_index_name(settings, MODEL, es)
    won = ensure_index(es, settings, MODEL)
    assert won == name
    _stale_alias_lookup(monkeypatch)
    # its name lookup ran before the winner's create too: it tries the same name
    monkeypatch.setattr(index_module, "new_index_name", lambda *_: name)
    assert ensure_index(es, settings, MODEL) == won
    assert _indices(es, settings.index) == [won]


def test_the_late_creator_of_the_next_version_uses_the_winners_index(es: Elasticsearch, settings: Settings,
                                                                     monkeypatch: pytest.MonkeyPatch):
    """The winner's create committed between the late worker's alias lookup and its name
    lookup: it asks for v2 with the alias as write index, which ES refuses with a 500."""
    won = ensure_index(es, settings, MODEL)
    assert won.endswith("-v1")
    _stale_alias_lookup(monkeypatch)
    assert ensure_index(es, settings, MODEL) == won
    assert _indices(es, settings.index) == [won]


def test_a_create_that_fails_for_another_reason_still_raises(es: Elasticsearch, settings: Settings,
                                                             monkeypatch: pytest.MonkeyPatch):
    """No alias appeared: the create's own error reaches the caller."""
    from elasticsearch import BadRequestError

    monkeypatch.setattr(index_module, "new_index_name", lambda *_: f"{settings.index}-Upper-Case")
    with pytest.raises(BadRequestError) as caught:
        ensure_index(es, settings, MODEL)
    assert caught.value.error == "invalid_index_name_exception"
    assert _indices(es, settings.index) == []

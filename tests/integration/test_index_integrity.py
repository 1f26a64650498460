"""Index integrity against the real node: deletes that stream and fail loudly."""

from __future__ import annotations

import pytest
from elasticsearch import Elasticsearch
from elasticsearch.helpers import bulk

from esrag.errors import EsragError
from esrag.index import delete_matching, wait_for_count
from esrag.settings import Settings


def _plain_index(es: Elasticsearch, settings: Settings, n: int) -> str:
    name = f"{settings.index}-plain"
    es.indices.create(index=name, settings={"number_of_shards": 2, "number_of_replicas": 0},
                      mappings={"properties": {"group": {"type": "keyword"}}})
    bulk(es, ({"_index": name, "_id": f"d{i}", "group": "odd" if i % 2 else "even"} for i in range(n)),
         refresh="wait_for")
    return name


def test_delete_matching_streams_in_capped_requests(es: Elasticsearch, settings: Settings) -> None:
    name = _plain_index(es, settings, 2_501)
    # 1,250 matches in requests of at most 7 actions / 2 KiB: every one deleted, counted once
    assert delete_matching(es, name, {"term": {"group": "odd"}}, chunk_actions=7, chunk_bytes=2048) == 1_250
    assert wait_for_count(es, name, 1_251) == 1_251
    assert delete_matching(es, name, {"term": {"group": "odd"}}) == 0


def test_delete_matching_raises_on_failed_items(es: Elasticsearch, settings: Settings) -> None:
    name = _plain_index(es, settings, 20)
    es.indices.put_settings(index=name, settings={"index.blocks.write": True})
    try:
        with pytest.raises(EsragError) as info:
            delete_matching(es, name, {"term": {"group": "odd"}})
        message = str(info.value)
        assert "\n" not in message
        assert message.startswith(f"10 deletes failed in index {name}, first: d")
        assert "HTTP 403 cluster_block_exception" in message
    finally:
        es.indices.put_settings(index=name, settings={"index.blocks.write": None})
    assert wait_for_count(es, name, 20) == 20

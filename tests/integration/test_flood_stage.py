"""The flood-stage disk watermark: an index made read-only stops ingest with one clear line.

The block Elasticsearch sets at the flood stage (``index.blocks.read_only_allow_delete``)
is set by hand on this test's own index; the shared node's disk is not touched.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

from esrag.index import alias_target
from esrag.settings import Settings
from ingest.bulk import WriteBlocked
from ingest.pipeline import ingest_files

pytestmark = pytest.mark.timeout(180)


def test_read_only_index_gives_one_line_with_the_fix_then_ingest_resumes(
        es: Elasticsearch, settings: Settings, tmp_path: Path):
    doc = tmp_path / "a.txt"
    doc.write_text("The first version of a document about rye bread.")
    assert ingest_files([doc], settings).indexed == 1
    index = alias_target(es, settings.index)
    expected = (f"Elasticsearch made index {index} read-only (flood-stage disk watermark): free disk space "
                "on its data nodes, then reset the block with PUT _all/_settings "
                '{"index.blocks.read_only_allow_delete": null}; nothing was lost, run again to continue')
    errors = []
    try:
        # Elasticsearch lifts this block by itself within ~30 s when the disk is below the high
        # watermark (as here): set it right before each try, and retry if it was lifted first.
        for attempt in range(3):
            doc.write_text(f"Version {attempt + 2} of a document about rye bread.")
            es.indices.put_settings(index=index, settings={"index.blocks.read_only_allow_delete": True})
            try:
                ingest_files([doc], settings)
            except WriteBlocked as exc:
                errors.append(str(exc))
                break
    finally:
        es.indices.put_settings(index=index, settings={"index.blocks.read_only_allow_delete": None})
    assert errors == [expected]
    summary = ingest_files([doc], settings)
    assert (summary.indexed, summary.failed) == (1, [])
    hits = es.search(index=settings.index, query={"match_all": {}})["hits"]["hits"]
    assert [h["_source"]["text"] for h in hits] == [doc.read_text()]

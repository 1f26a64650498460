"""`--sync`: delete the documents whose source file under a synced folder no longer exists.

The index is asked which sources it holds under each folder (a composite aggregation over
the ``source`` keyword, page by page, so memory stays flat), each is checked on disk, and
the chunks of every vanished source are deleted by ``source``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from elasticsearch import Elasticsearch

from esrag.es import check_shards, make_client
from esrag.index import alias_target, delete_matching
from esrag.settings import Settings

PAGE = 1000  # distinct sources per aggregation page


@dataclass
class SyncResult:
    """Chunks deleted and the sources they came from."""

    deleted: int = 0
    sources: list[str] = field(default_factory=list)


def sync_roots(paths: list[str]) -> list[Path]:
    """The folders among ``paths`` (resolved): what ``--sync`` mirrors."""
    return [Path(os.path.realpath(Path(p).expanduser())) for p in paths if Path(p).expanduser().is_dir()]


def _within(clause: dict[str, Any], scope: Mapping[str, str] | None) -> dict[str, Any]:
    """``clause`` restricted to the documents stamped with every ``field: value`` of ``scope``."""
    if not scope:
        return clause
    return {"bool": {"filter": [clause, *({"term": {k: v}} for k, v in sorted(scope.items()))]}}


def indexed_sources(client: Elasticsearch, index: str, root: Path,
                    scope: Mapping[str, str] | None = None) -> Iterator[str]:
    """Every distinct ``source`` in ``index`` that lies under ``root`` (within ``scope``)."""
    after: dict[str, str] | None = None
    while True:
        composite: dict = {"size": PAGE, "sources": [{"source": {"terms": {"field": "source"}}}]}
        if after is not None:
            composite["after"] = after
        under = _within({"prefix": {"source": f"{root}{os.sep}"}}, scope)
        resp = client.search(index=index, size=0, query=under, aggs={"sources": {"composite": composite}})
        check_shards(resp, "the look-up of indexed sources")
        agg = resp["aggregations"]["sources"]
        for bucket in agg["buckets"]:
            yield str(bucket["key"]["source"])
        after = agg.get("after_key")
        if not agg["buckets"] or after is None:
            return


def delete_vanished(client: Elasticsearch, index: str, roots: list[Path],
                    scope: Mapping[str, str] | None = None) -> SyncResult:
    """Delete the chunks of every source under ``roots`` whose file no longer exists. With
    ``scope`` (an ingest key's stamp, ``meta.<key>: value``) only the chunks stamped with it:
    a tenant's sync never deletes another tenant's copy of the same file."""
    result = SyncResult()
    for root in roots:
        gone = [s for s in indexed_sources(client, index, root, scope) if not Path(s).is_file()]
        for source in gone:
            result.deleted += delete_matching(client, index, _within({"term": {"source": source}}, scope))
            result.sources.append(source)
    if result.sources:
        client.indices.refresh(index=index)
    return result


def sync_index(settings: Settings, paths: list[str], scope: Mapping[str, str] | None = None) -> SyncResult:
    """``delete_vanished`` for the folders among ``paths`` in the index behind ``settings.index``."""
    roots = sync_roots(paths)
    if not roots:
        return SyncResult()
    client = make_client(settings)
    try:
        index = alias_target(client, settings.index)
        return delete_vanished(client, index, roots, scope) if index is not None else SyncResult()
    finally:
        client.close()

"""Force-merge the index behind an alias into few segments (`esrag optimize`).

A big bulk load leaves tens of segments (36 after the 300k-chunk run in docs/SCALE.md); every
kNN search walks one HNSW graph per segment, so merging them into one makes dense search
cheaper and (per graph) more thorough: docs/SCALE.md has the measured effect.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from esrag.errors import ConfigError, EsragError, ServiceUnavailable

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

    from esrag.settings import Settings

FORCEMERGE_TIMEOUT = 6 * 3600  # seconds the client waits for one force-merge request


@dataclass
class OptimizeSummary:
    """What `esrag optimize` did."""

    alias: str
    index: str
    docs: int
    segments_before: int
    segments_after: int
    max_segments: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def segment_count(client: Elasticsearch, index: str) -> int:
    """Searchable segments of ``index`` over its primary shards."""
    stats = client.indices.stats(index=index, metric="segments")
    return int(stats["indices"][index]["primaries"]["segments"]["count"])


def doc_count(client: Elasticsearch, index: str) -> int:
    """Live documents of ``index`` (primaries)."""
    stats = client.indices.stats(index=index, metric="docs")
    return int(stats["indices"][index]["primaries"]["docs"]["count"])


def force_merge(client: Elasticsearch, alias: str, max_segments: int = 1) -> OptimizeSummary:
    """Refresh, then force-merge the index behind ``alias`` to at most ``max_segments`` segments
    per shard; waits for the merge (it runs on the node whether or not the client waits)."""
    from esrag.index import alias_target

    if max_segments < 1:
        raise ConfigError(f"--max-segments must be at least 1, got {max_segments}")
    index = alias_target(client, alias)
    if index is None:
        raise EsragError(f"index {alias!r} does not exist; ingest documents first")
    client.indices.refresh(index=index)  # unrefreshed writes would stay outside the merge
    before = segment_count(client, index)
    t0 = time.perf_counter()
    client.options(request_timeout=FORCEMERGE_TIMEOUT).indices.forcemerge(
        index=index, max_num_segments=max_segments, wait_for_completion=True)
    client.indices.refresh(index=index)
    seconds = time.perf_counter() - t0
    return OptimizeSummary(alias=alias, index=index, docs=doc_count(client, index), segments_before=before,
                           segments_after=segment_count(client, index), max_segments=max_segments,
                           seconds=round(seconds, 2))


def optimize(settings: Settings, max_segments: int = 1) -> OptimizeSummary:
    """`esrag optimize`: force-merge the index behind ``settings.index``; ES errors become one line."""
    from elasticsearch import ApiError, TransportError

    from esrag.es import make_client, unavailable_message

    client = make_client(settings)
    try:
        return force_merge(client, settings.index, max_segments)
    except (ApiError, TransportError) as exc:
        if isinstance(exc, ApiError) and exc.meta.status not in (401, 403):
            raise EsragError(f"force-merge of {settings.index!r} failed: {exc.message}") from None
        raise ServiceUnavailable(unavailable_message(settings, exc)) from None
    finally:
        client.close()

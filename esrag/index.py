"""The index contract: mapping, versioned index behind an alias, and the model check.

Readers and writers address the alias (``settings.index``). The concrete index is
``<alias>-<model-slug>-v<N>``; its ``_meta.esrag`` records the embedding model, its
dimensions, similarity, pooling, query/document prompts, precision and runtime so that a
mismatched configuration is refused on both sides.
"""

from __future__ import annotations

import re
import time
from typing import Any

from elasticsearch import ApiError, Elasticsearch, NotFoundError

from esrag.embedder import ModelInfo
from esrag.errors import ConfigError, EsragError, ModelMismatch, es_reason
from esrag.rerank_model import META_KEY as RERANK_META_KEY
from esrag.rerank_model import RERANK_VECTOR_FIELD, describe, vectors_match
from esrag.rerank_model import field_mapping as rerank_field_mapping
from esrag.rerank_model import vector_meta as rerank_vector_meta
from esrag.settings import Settings

SCHEMA_VERSION = 1
TEXT_FIELD = "text"
STEMMED_FIELD = "text_stemmed"
VECTOR_FIELD = "embedding"


def model_slug(name: str) -> str:
    """Index-name-safe form of a model name."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def index_options(kind: str) -> dict[str, Any]:
    """``index_options`` of the dense_vector field for a quantization kind."""
    opts: dict[str, Any] = {"type": kind}
    if kind.endswith("hnsw"):
        opts.update({"m": 16, "ef_construction": 100})
    return opts


def build_mapping(settings: Settings, model: ModelInfo, rerank: ModelInfo | None = None) -> dict[str, Any]:
    """Settings and mappings of a chunk index for ``model``; with ``rerank``, also the field of
    stored second-stage vectors of that model (``ESRAG_RERANK_VECTORS``)."""
    body: dict[str, Any] = {
        "settings": {
            "number_of_shards": settings.shards,
            "number_of_replicas": settings.replicas,
        },
        "mappings": {
            "_meta": {
                "esrag": {
                    "schema_version": SCHEMA_VERSION,
                    **model.meta(),
                    "vector_index_type": settings.vector_index_type,
                    "stem_language": settings.stem_language,
                }
            },
            "dynamic": "strict",
            "properties": {
                "chunk_id": {"type": "keyword"},
                "doc_id": {"type": "keyword"},
                "source": {"type": "keyword"},
                "title": {"type": "text", "analyzer": settings.text_analyzer,
                          "fields": {"raw": {"type": "keyword", "ignore_above": 512}}},
                "content_type": {"type": "keyword"},
                "modified": {"type": "date"},
                "chunk_no": {"type": "integer"},
                "start": {"type": "integer"},
                "end": {"type": "integer"},
                "headings": {"type": "text", "analyzer": settings.text_analyzer},
                "doc_hash": {"type": "keyword"},
                "chunk_hash": {"type": "keyword"},
                "model": {"type": "keyword"},
                TEXT_FIELD: {"type": "text", "analyzer": settings.text_analyzer},
                STEMMED_FIELD: {"type": "text", "analyzer": "whitespace"},
                "meta": {"type": "flattened"},
                VECTOR_FIELD: {
                    "type": "dense_vector",
                    "dims": model.dims,
                    "index": True,
                    "similarity": model.similarity,
                    "index_options": index_options(settings.vector_index_type),
                },
            },
        },
    }
    if rerank is not None:
        body["mappings"]["_meta"]["esrag"][RERANK_META_KEY] = rerank_vector_meta(rerank)
        body["mappings"]["properties"][RERANK_VECTOR_FIELD] = rerank_field_mapping(rerank)
    return body


def new_index_name(settings: Settings, model: ModelInfo, client: Elasticsearch) -> str:
    """Next free ``<alias>-<model>-v<N>`` name."""
    prefix = f"{settings.index}-{model_slug(model.name)}-v"
    existing = client.indices.get(index=f"{prefix}*", expand_wildcards="all", allow_no_indices=True)
    versions = [int(n[len(prefix):]) for n in existing if n[len(prefix):].isdigit()]
    return f"{prefix}{max(versions, default=0) + 1}"


def alias_target(client: Elasticsearch, alias: str) -> str | None:
    """The concrete index behind ``alias``, or None when the alias does not exist."""
    try:
        found = client.indices.get_alias(name=alias)
    except NotFoundError:
        if client.indices.exists(index=alias):
            raise EsragError(
                f"{alias!r} is a concrete index, not an esrag alias; choose another ESRAG_INDEX"
            ) from None
        return None
    names = list(found.keys())
    if len(names) != 1:
        raise EsragError(f"alias {alias!r} points at {len(names)} indices: {', '.join(names)}")
    return names[0]


def index_meta(client: Elasticsearch, index: str) -> dict[str, Any]:
    """The ``_meta.esrag`` block of a concrete index."""
    mapping = client.indices.get_mapping(index=index)
    return dict(mapping[index]["mappings"].get("_meta", {}).get("esrag", {}))


# what an index from before these fields were recorded was built with
LEGACY_META = {"similarity": "cosine", "query_prompt": "", "document_prompt": "", "precision": "fp32"}
CHECKED_FIELDS = ("model", "dims", "similarity", "pooling", "query_prompt", "document_prompt", "precision")


def check_model(meta: dict[str, Any], model: ModelInfo, index: str) -> None:
    """Raise ModelMismatch unless the index's vectors were written by this embedder configuration.

    Model, dimensions, similarity, pooling, both prompts and precision must match (the
    runtime may differ: ONNX and torch at fp32 give the same vectors). A field an older
    index does not record takes its legacy value; pooling is then not checked.
    """
    mine = model.meta()
    diffs = []
    for key in CHECKED_FIELDS:
        theirs = meta.get(key, LEGACY_META.get(key))
        if theirs is not None and theirs != mine[key]:
            diffs.append(f"{key} {theirs!r} vs {mine[key]!r}")
    if not diffs:
        return
    precision = meta.get("precision", "fp32")
    raise ModelMismatch(
        f"index {index} was built with model {meta.get('model')} ({meta.get('dims')}d, {precision}) "
        f"but the configured embedder is {model.name} ({model.dims}d, {model.precision}) "
        f"[{'; '.join(diffs)}]; run `esrag reindex --model {model.name}` to rebuild the index for it, "
        f"or set ESRAG_EMBED_MODEL={meta.get('model')} ESRAG_EMBED_PRECISION={precision} to use it as built"
    )


def create_index(client: Elasticsearch, settings: Settings, model: ModelInfo,
                 rerank: ModelInfo | None = None) -> str:
    """Create a new versioned index for ``model`` (no alias change); return its name."""
    name = new_index_name(settings, model, client)
    client.indices.create(index=name, **build_mapping(settings, model, rerank))
    return name


def ensure_rerank_field(client: Elasticsearch, index: str, meta: dict[str, Any], rerank: ModelInfo) -> None:
    """Make ``index`` able to hold stored rerank vectors of ``rerank`` (add the field and its
    ``_meta`` record when it has none); ConfigError when it holds vectors of another model."""
    recorded = meta.get(RERANK_META_KEY)
    if recorded:
        if vectors_match(recorded, rerank):
            return
        raise ConfigError(
            f"ESRAG_RERANK_VECTORS: index {index} stores rerank vectors of {describe(recorded)}, but the "
            f"rerank model is {rerank.name} ({rerank.dims}d, {rerank.precision}); set ESRAG_RERANK_MODEL="
            f"{recorded.get('model')}, or run `esrag reindex` with this rerank model to rebuild the vectors"
        )
    # _meta is replaced as a whole by a mapping update: send all of it
    full = {**meta, RERANK_META_KEY: rerank_vector_meta(rerank)}
    client.indices.put_mapping(index=index, meta={"esrag": full},
                               properties={RERANK_VECTOR_FIELD: rerank_field_mapping(rerank)})


def ensure_index(client: Elasticsearch, settings: Settings, model: ModelInfo,
                 rerank: ModelInfo | None = None) -> str:
    """Return the concrete index behind the alias, creating both on first use.

    Raises ModelMismatch when the alias already points at an index of another model. With
    ``rerank`` (ESRAG_RERANK_VECTORS), the index gets the stored rerank-vector field.
    """
    target = alias_target(client, settings.index)
    if target is not None:
        meta = index_meta(client, target)
        check_model(meta, model, target)
        if rerank is not None:
            ensure_rerank_field(client, target, meta, rerank)
        return target
    name = new_index_name(settings, model, client)
    try:
        client.indices.create(
            index=name, aliases={settings.index: {"is_write_index": True}},
            **build_mapping(settings, model, rerank)
        )
    except ApiError:
        # Another worker created the alias's index at the same moment: under the same name
        # (resource_already_exists_exception), or, when it committed between our alias check
        # and our name lookup, as the version before ours (ES refuses ours with a 500
        # illegal_state_exception, "alias has more than one write index", creating nothing).
        # Either way the alias exists now: use theirs.
        if alias_target(client, settings.index) is None:
            raise
    target = alias_target(client, settings.index)
    if target is None:
        raise EsragError(f"index for alias {settings.index!r} exists without the alias; fix it by hand")
    meta = index_meta(client, target)
    check_model(meta, model, target)
    if rerank is not None:
        ensure_rerank_field(client, target, meta, rerank)
    client.cluster.health(index=target, wait_for_status="yellow", timeout="30s")
    return target


def swap_alias(client: Elasticsearch, alias: str, new_index: str) -> str | None:
    """Point ``alias`` at ``new_index`` in one atomic request; return the old index."""
    old = alias_target(client, alias)
    actions: list[dict[str, Any]] = []
    if old is not None:
        actions.append({"remove": {"index": old, "alias": alias}})
    actions.append({"add": {"index": new_index, "alias": alias, "is_write_index": True}})
    client.indices.update_aliases(actions=actions)
    return old


def wait_for_count(client: Elasticsearch, index: str, expected: int, timeout: float = 30.0) -> int:
    """Refresh and poll ``_count`` until it equals ``expected`` (for tests and tools)."""
    deadline = time.monotonic() + timeout
    count = -1
    while time.monotonic() < deadline:
        client.indices.refresh(index=index)
        count = int(client.count(index=index)["count"])
        if count == expected:
            break
        time.sleep(0.2)
    return count


DELETE_CHUNK_ACTIONS = 1000  # delete actions per bulk request (elasticsearch-py's default is 500)
DELETE_CHUNK_BYTES = 8 * 1024 * 1024  # ... and at most this many bytes


def delete_matching(
    client: Elasticsearch, index: str, query: dict[str, Any], *,
    chunk_actions: int = DELETE_CHUNK_ACTIONS, chunk_bytes: int = DELETE_CHUNK_BYTES,
) -> int:
    """Delete every document matching ``query``; return how many were deleted.

    Scroll + bulk delete, because minimal distributions lack ``_delete_by_query``. Ids
    stream from the scroll into bulk requests of at most ``chunk_actions`` actions and
    ``chunk_bytes`` bytes, so memory stays flat however many match. A document already
    gone (404) is not counted; any other failed item raises EsragError naming the first.
    """
    from elasticsearch.helpers import scan, streaming_bulk

    actions = (
        {"_op_type": "delete", "_index": hit["_index"], "_id": hit["_id"]}
        for hit in scan(client, index=index, query={"query": query, "_source": False}, size=1000)
    )
    deleted = 0
    failed: list[str] = []
    try:
        for ok, item in streaming_bulk(client, actions, chunk_size=chunk_actions, max_chunk_bytes=chunk_bytes,
                                       raise_on_error=False, raise_on_exception=True):
            info = item.get("delete", {})
            if ok:
                deleted += 1
            elif info.get("status") != 404:
                failed.append(f"{info.get('_id')}: HTTP {info.get('status')} "
                              f"{es_reason(info.get('error'))}")
    except ApiError as exc:
        error = exc.body.get("error") if isinstance(exc.body, dict) else exc
        raise EsragError(f"deleting from index {index} failed after {deleted} deletes: HTTP "
                         f"{exc.meta.status} {es_reason(error)}") from None
    if failed:
        raise EsragError(f"{len(failed)} deletes failed in index {index}, first: {failed[0]}")
    return deleted

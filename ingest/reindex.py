"""`esrag reindex --model NEW`: rebuild the alias's index with another embedding model, no downtime.

The alias keeps serving the old index while a new versioned index for the new model is
filled from the old one's chunk documents: every field is copied as stored (chunk ids
unchanged), only ``embedding`` and ``model`` are new; the vector is recomputed from the
same input the ingest pipeline embeds (heading context line, then the chunk text). The
scan is streamed in batches, so memory stays flat. Each chunk's sequence number is
folded into a fingerprint of its document while it is copied; after the copy the old
index is fingerprinted again, and when any document differs (a chunk changed, added or
removed, whatever the counts say) nothing is swapped. Otherwise one ``update_aliases``
request moves the alias; the old index stays for rollback unless ``--delete-old``.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import typer
from elasticsearch import Elasticsearch

from esrag.embedder import Embedder, get_embedder
from esrag.errors import EsragError, ModelMismatch
from esrag.es import make_client, scan_all
from esrag.index import VECTOR_FIELD, alias_target, check_model, create_index, index_meta, swap_alias
from esrag.refresh import RefreshPause
from esrag.rerank_model import META_KEY as RERANK_META_KEY
from esrag.rerank_model import (
    RERANK_VECTOR_FIELD,
    recorded_info,
    vector_embedder,
    vector_values,
    vectors_match,
)
from esrag.settings import Settings, load_settings
from ingest.bulk import BulkWriter
from ingest.chunking import context_line


@dataclass
class ReindexSummary:
    """What one reindex did."""

    alias: str
    old_index: str
    new_index: str
    old_model: str
    old_dims: int
    new_model: str
    new_dims: int
    chunks: int
    seconds: float
    old_deleted: bool
    rerank_model: str | None = None  # the model of the stored rerank vectors (ESRAG_RERANK_VECTORS)
    rerank_encoded: int = 0  # chunks whose rerank vector was computed (the rest were copied)

    def to_dict(self) -> dict[str, Any]:
        """The JSON summary of `esrag reindex --json`."""
        out = asdict(self)
        out["seconds"] = round(self.seconds, 3)
        return out


def embed_input(src: dict[str, Any]) -> str:
    """What the ingest pipeline embedded for a stored chunk: its context line, then its text."""
    ctx = context_line(src.get("title") or "", tuple(src.get("headings") or ()))
    text = src.get("text") or ""
    return f"{ctx}\n{text}" if ctx else text


def _batches(client: Elasticsearch, index: str, size: int, keepalive: str) -> Iterator[list[dict[str, Any]]]:
    """The index's documents without their vectors, ``size`` at a time (scroll snapshot)."""
    batch: list[dict[str, Any]] = []
    body = {"query": {"match_all": {}}, "_source": {"excludes": [VECTOR_FIELD]}, "seq_no_primary_term": True}
    for hit in scan_all(client, index, body, size=size, scroll=keepalive, what="the reindex copy"):
        batch.append(hit)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _fold(prints: dict[str, int], hit: dict[str, Any]) -> None:
    """Add one chunk's (id, seq_no, primary term) to its document's order-free fingerprint."""
    key = f"{hit['_id']}\x00{hit.get('_seq_no')}\x00{hit.get('_primary_term')}".encode()
    doc = str(hit["_source"].get("doc_id", ""))
    prints[doc] = (prints.get(doc, 0) + int.from_bytes(hashlib.blake2b(key, digest_size=8).digest())) % 2**64


def fingerprints(client: Elasticsearch, index: str) -> dict[str, int]:
    """doc_id -> fingerprint of its chunks' ids and sequence numbers, as the index holds them now."""
    prints: dict[str, int] = {}
    body = {"query": {"match_all": {}}, "_source": ["doc_id"], "seq_no_primary_term": True}
    for hit in scan_all(client, index, body, what="the reindex check"):
        _fold(prints, hit)
    return prints


def changed_documents(before: dict[str, int], after: dict[str, int]) -> list[str]:
    """doc_ids whose chunks differ between two fingerprint maps (sorted)."""
    return sorted(d for d in before.keys() | after.keys() if before.get(d) != after.get(d))


def _count(client: Elasticsearch, index: str) -> int:
    client.indices.refresh(index=index)
    return int(client.count(index=index)["count"])


def copy_reembedded(
    client: Elasticsearch, settings: Settings, embedder: Embedder, old: str, new: str, *,
    batch_size: int, progress: Callable[[int], None] | None = None, prints: dict[str, int] | None = None,
    pause: RefreshPause | None = None, rerank: Embedder | None = None, keep_rerank: bool = False,
    counts: dict[str, int] | None = None,
) -> int:
    """Copy every chunk of ``old`` into ``new`` with vectors of ``embedder``; return how many.

    ``prints`` receives the fingerprint of each copied document (see ``fingerprints``).
    Stored rerank vectors are copied when ``keep_rerank`` (else dropped); with ``rerank``,
    every chunk without one copied gets its vector from that model (``counts["rerank_encoded"]``).
    """
    counts = counts if counts is not None else {}
    counts.setdefault("rerank_encoded", 0)
    writer = BulkWriter(client, settings.bulk_max_bytes, max_retries=settings.bulk_max_retries)
    failed: list[str] = []
    done = 0

    def note(outcomes: list[Any]) -> None:
        failed.extend(f"{o.key}: {o.error}" for o in outcomes if not o.ok)

    for batch in _batches(client, old, batch_size, settings.reindex_scroll_keepalive):
        vectors = embedder.encode_document([embed_input(h["_source"]) for h in batch])
        if not keep_rerank:
            for h in batch:
                h["_source"].pop(RERANK_VECTOR_FIELD, None)
        if rerank is not None:
            need = [h for h in batch if not h["_source"].get(RERANK_VECTOR_FIELD)]
            for h, rvec in zip(need, rerank.encode_document([h["_source"].get("text") or "" for h in need]),
                               strict=True):
                h["_source"][RERANK_VECTOR_FIELD] = vector_values(rvec)
            counts["rerank_encoded"] += len(need)
        for hit, vec in zip(batch, vectors, strict=True):
            if prints is not None:
                _fold(prints, hit)
            src = dict(hit["_source"])
            src["model"] = embedder.info.name
            src[VECTOR_FIELD] = vec.tolist()
            note(writer.add("index", new, hit["_id"], src, hit["_id"]))
        done += len(batch)
        if pause is not None:
            pause.renew()
        if progress is not None:
            progress(done)
    note(writer.flush())
    if failed:
        raise EsragError(f"{len(failed)} chunks could not be written to {new}, first: {failed[0]}")
    return done


def reindex(
    settings: Settings, model: str, model_path: Path | None = None, *, delete_old: bool = False,
    batch_size: int | None = None, progress: Callable[[int, int], None] | None = None,
) -> ReindexSummary:
    """Rebuild ``settings.index`` with ``model`` into a new index and swap the alias to it.

    Raises EsragError when the alias is missing, already uses ``model``, or received
    writes while the copy ran (then nothing is swapped and the new index is removed).
    """
    started = time.monotonic()
    client = make_client(settings)
    alias = settings.index
    old = alias_target(client, alias)
    if old is None:
        raise EsragError(f"index alias {alias!r} does not exist; nothing to reindex")
    meta = index_meta(client, old)
    target = settings.model_copy(update={
        "embed_model": model, "embed_model_path": model_path,
        "stem_language": meta.get("stem_language", settings.stem_language),  # text_stemmed is copied
    })
    embedder = get_embedder(target)
    old_rerank = meta.get(RERANK_META_KEY) or None
    rerank = vector_embedder(settings) if settings.rerank_vectors else None
    # stored rerank vectors: kept when they are of the wanted model (or none is wanted), else rebuilt
    keep_rerank = old_rerank is not None and (rerank is None or vectors_match(old_rerank, rerank.info))
    rerank_info = rerank.info if rerank is not None else recorded_info(old_rerank) if old_rerank else None
    try:
        check_model(meta, embedder.info, old)
    except ModelMismatch:
        pass  # the configuration differs: re-embed
    else:
        if rerank is None or keep_rerank:
            raise EsragError(f"index {old} already uses model {model} ({meta.get('dims')}d, "
                             f"{embedder.info.precision}); nothing to reindex")
    total = _count(client, old)
    new = create_index(client, target, embedder.info, rerank_info)
    try:
        client.cluster.health(index=new, wait_for_status="yellow", timeout="30s")
        tick = (lambda n: progress(n, total)) if progress is not None else None
        copied_prints: dict[str, int] = {}
        counts: dict[str, int] = {}
        with RefreshPause(client, new, lease=settings.refresh_pause_lease) as pause:
            pause.pause()
            copied = copy_reembedded(client, settings, embedder, old, new,
                                     batch_size=batch_size or settings.reindex_batch_size,
                                     progress=tick, prints=copied_prints, pause=pause,
                                     rerank=rerank, keep_rerank=keep_rerank, counts=counts)
        changed = changed_documents(copied_prints, fingerprints(client, old))
        if changed:
            raise EsragError(
                f"alias {alias!r} received writes during the reindex ({len(changed)} documents changed, "
                f"first {changed[0]!r}); nothing swapped, stop ingest and run again"
            )
        now_new = _count(client, new)
        if not copied == now_new:
            raise EsragError(f"count mismatch: {total} chunks in {old}, {copied} copied, {now_new} in {new}; "
                             "nothing swapped")
    except BaseException:
        client.indices.delete(index=new, ignore_unavailable=True)
        raise
    swap_alias(client, alias, new)
    if delete_old:
        client.indices.delete(index=old)
    return ReindexSummary(
        alias=alias, old_index=old, new_index=new, old_model=str(meta.get("model")),
        old_dims=int(meta.get("dims") or 0), new_model=embedder.info.name, new_dims=embedder.info.dims,
        chunks=now_new, seconds=time.monotonic() - started, old_deleted=delete_old,
        rerank_model=rerank_info.name if rerank_info is not None else None,
        rerank_encoded=counts.get("rerank_encoded", 0),
    )


def print_summary(s: ReindexSummary, model_path: Path | None) -> None:
    """The human-readable report, ending with what the user must change."""
    typer.echo(
        f"reindexed {s.chunks} chunks of {s.alias} from {s.old_index} ({s.old_model}, {s.old_dims}d) "
        f"into {s.new_index} ({s.new_model}, {s.new_dims}d) in {s.seconds:.1f}s"
    )
    typer.echo(f"alias {s.alias} now points at {s.new_index}")
    if s.rerank_model:
        typer.echo(f"stored rerank vectors ({s.rerank_model}): {s.rerank_encoded} encoded, "
                   f"{s.chunks - s.rerank_encoded} copied")
    if s.old_deleted:
        typer.echo(f"old index {s.old_index} deleted")
    else:
        typer.echo(f"old index {s.old_index} kept for rollback; delete it when no longer needed")
    env = f"ESRAG_EMBED_MODEL={s.new_model}" + (f" ESRAG_EMBED_MODEL_PATH={model_path}" if model_path else "")
    typer.echo(
        f"set {env} for workers and wherever ESRAG_EMBED_MODEL is set: with {s.old_model} they now fail "
        "with a model mismatch (queries that set no model follow the index)"
    )


def reindex_command(model: str, model_path: Path | None = None, index: str | None = None,
                    delete_old: bool = False, as_json: bool = False) -> None:
    """`esrag reindex` (ingest/cli.py declares its options): re-embed every chunk with another
    model into a new index, then swap the alias (no downtime)."""
    settings = load_settings(index=index)
    from esrag.terminal import progress_wanted

    if progress_wanted():
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(TextColumn("chunks"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      console=Console(stderr=True)) as bar:
            task = bar.add_task("reindex", total=None)
            summary = reindex(settings, model, model_path, delete_old=delete_old,
                              progress=lambda n, t: bar.update(task, completed=n, total=t))
    else:
        summary = reindex(settings, model, model_path, delete_old=delete_old)
    if as_json:
        out = summary.to_dict()
        out["embed_model_env"] = {"ESRAG_EMBED_MODEL": summary.new_model,
                                  **({"ESRAG_EMBED_MODEL_PATH": str(model_path)} if model_path else {})}
        typer.echo(json.dumps(out, indent=2))
    else:
        print_summary(summary, model_path)

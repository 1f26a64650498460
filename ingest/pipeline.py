"""The ingest pipeline: load, chunk, skip unchanged, embed, bulk-write, in bounded stages.

Three stages overlap: a loader thread parses files, looks up the stored hashes of each
batch of documents and chunks only new or changed ones; the calling thread embeds chunk
batches; a writer thread streams byte-sized bulk requests. Queues between them are
bounded, so memory stays flat however large the corpus. The Celery workers call
``ingest_files`` too.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from elasticsearch import Elasticsearch, NotFoundError

from esrag.embedder import Embedder, get_embedder
from esrag.errors import EsragError, one_line
from esrag.es import cluster_health, make_client
from esrag.index import alias_target, delete_matching, ensure_index
from esrag.refresh import RefreshPause
from esrag.rerank_model import RERANK_VECTOR_FIELD, vector_embedder, vector_values
from esrag.settings import Settings
from esrag.stemming import stem_text
from ingest import existing
from ingest.chunking import Chunk, ChunkingTimeout, HFTokenCounter, chunk_document
from ingest.documents import Document, LoadError, chunk_hash, chunk_id, chunk_prefix, doc_hash, doc_key
from ingest.docwrite import DocumentWrite, DocumentWriter
from ingest.guards import Limits
from ingest.sandbox import Sandbox, load_isolated
from ingest.summary import IngestSummary, ProgressEvent


@dataclass
class _Record:
    work: DocumentWrite
    pos: int  # index into work.chunks


class _Stop(Exception):
    pass


class _Run:
    """State shared by the stages of one ingest."""

    def __init__(self, settings: Settings, client: Elasticsearch, embedder: Embedder, index: str,
                 files: list[Path], progress: Callable[[ProgressEvent], None] | None,
                 refresh_off_after: int, pause: RefreshPause | None = None):
        self.settings = settings
        self.client = client
        self.embedder = embedder
        self.index = index
        self.files = files
        self.progress = progress
        self.refresh_off_after = refresh_off_after
        self.summary = IngestSummary(index=index)
        self.files_done = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.to_embed: queue.Queue[Any] = queue.Queue(maxsize=settings.ingest_queue_batches)
        self.to_write: queue.Queue[Any] = queue.Queue(maxsize=settings.ingest_queue_batches)
        self.counter = HFTokenCounter(embedder.counting_tokenizer)  # chunking runs in the loader thread
        self.model_max = embedder.max_seq_length
        self.started = time.monotonic()
        self.stamp: dict[str, str] = {}  # metadata a scoped API key pins on every document
        self.roots: list[Path] | None = None  # files must resolve under these when opened
        self.pause = pause if pause is not None else RefreshPause(client, index)
        self.rerank: Embedder | None = None  # ESRAG_RERANK_VECTORS: the rerank model's passage vectors

    # -- shared helpers -------------------------------------------------------------
    def fail(self, source: str, error: str) -> None:
        with self.lock:
            self.summary.failed.append({"source": source, "error": error})

    def put(self, q: queue.Queue[Any], item: Any) -> None:
        while True:
            if self.stop.is_set():
                raise _Stop
            try:
                q.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def get(self, q: queue.Queue[Any]) -> Any:
        while True:
            if self.stop.is_set():
                raise _Stop
            try:
                return q.get(timeout=0.2)
            except queue.Empty:
                continue

    def emit(self) -> None:
        if self.progress is None:
            return
        s = self.summary
        self.progress(ProgressEvent(
            files_done=self.files_done, files_total=len(self.files), documents=s.documents,
            chunks=s.chunks, indexed=s.indexed, skipped_unchanged=s.skipped_unchanged,
            failed=len(s.failed), elapsed=time.monotonic() - self.started,
        ))

    # -- stage 1: load, look up, chunk ------------------------------------------------
    def load_stage(self) -> None:
        s = self.settings
        limits = Limits.from_settings(s)
        sandbox = None
        if s.parse_timeout:
            sandbox = Sandbox(s.max_file_bytes, limits, s.parse_timeout, s.parse_memory_mb)
        try:
            self._load_all(sandbox, limits)
        finally:
            if sandbox is not None:
                sandbox.close()

    def _load_all(self, sandbox: Sandbox | None, limits: Limits) -> None:
        batch: list[Document] = []
        chars = 0
        for path in self.files:
            if self.roots is not None:
                real = Path(os.path.realpath(path))
                if not any(real == r or real.is_relative_to(r) for r in self.roots):
                    self.fail(str(path), f"{path} resolves to {real}, outside the allowed roots; not read")
                    self.files_done += 1
                    continue
                path = real
            try:
                for item in load_isolated(sandbox, path, self.settings.max_file_bytes, limits):
                    if isinstance(item, LoadError):
                        if item.source == str(path):  # the whole file: its old version must go
                            self.fail_and_remove(item.source, item.message, source=str(path.resolve()))
                        else:
                            self.fail(item.source, item.message)
                        continue
                    batch.append(item)
                    chars += len(item.text)
                    if (len(batch) >= self.settings.ingest_doc_batch
                            or chars >= self.settings.ingest_doc_batch_chars):
                        self.prepare(batch)
                        batch, chars = [], 0
            except _Stop:
                raise
            except Exception as exc:  # a parser crashing on odd input fails that file only
                self.fail_and_remove(str(path), f"cannot load: {one_line(exc)}", source=str(path.resolve()))
            self.files_done += 1
        if batch:
            self.prepare(batch)
        self.put(self.to_embed, None)

    def fail_and_remove(self, label: str, error: str, *, source: str | None = None,
                        key: existing.DocKey | None = None) -> None:
        """Report a document (or file) that cannot be indexed and delete what the index held for it."""
        if key is not None:
            query: dict[str, Any] = {"bool": {"filter": [{"term": {"doc_id": key[0]}}] + (
                [{"term": {"source": key[1]}}] if key[1] is not None else [])}}
        else:  # a scoped key's file: only the copy stamped with its scope
            scope = [{"term": {f"meta.{k}": v}} for k, v in sorted(self.stamp.items())]
            query = {"bool": {"filter": [{"term": {"source": source}}, *scope]}}
        removed = delete_matching(self.client, self.index, query)
        with self.lock:
            self.summary.deleted += removed
        note = f"; its {removed} previously indexed chunks were removed" if removed else ""
        self.fail(label, error + note)

    def prepare(self, docs: list[Document]) -> None:
        s = self.settings
        if self.stamp:
            for d in docs:
                d.metadata.update(self.stamp)
                d.doc_id = stamped_doc_id(d.doc_id, self.stamp)
        model = self.embedder.info.name
        if self.rerank is not None:  # stored rerank vectors are part of what a document's chunks hold
            r = self.rerank.info
            model += f"|rerank={r.name}/{r.dims}/{r.precision}"
        hashes = [doc_hash(d, model=model, max_tokens=s.chunk_max_tokens, overlap=s.chunk_overlap_tokens,
                           min_tokens=s.chunk_min_tokens, stem_language=s.stem_language) for d in docs]
        keys = [doc_key(d, s.id_scope) for d in docs]
        stored = existing.doc_hashes(self.client, self.index, keys)
        todo = []
        with self.lock:
            self.summary.documents += len(docs)
        for doc, h, key in zip(docs, hashes, keys, strict=True):
            if stored.get(key) == {h}:
                with self.lock:
                    self.summary.skipped_unchanged += 1
            else:
                todo.append((doc, h, key))
        # every chunk the index holds for these documents, whatever a crashed write left
        old_ids = existing.chunk_ids(self.client, self.index, [key for _, _, key in todo])
        works = []
        for doc, h, key in todo:
            jsonl = doc.content_type == "application/jsonl"
            label = f"{doc.source} (id {doc.doc_id})" if jsonl else doc.source
            budget = max(s.parse_timeout, len(doc.text) / 1e6 / s.chunk_min_mb_per_s)
            deadline = time.monotonic() + budget if s.parse_timeout else None
            try:
                chunks = chunk_document(doc, self.counter, max_tokens=s.chunk_max_tokens,
                                        overlap=s.chunk_overlap_tokens, min_tokens=s.chunk_min_tokens,
                                        model_max_tokens=self.model_max,
                                        deadline=deadline)
            except ChunkingTimeout:
                self.fail_and_remove(label, f"chunking took over {budget:.0f} s (ESRAG_PARSE_TIMEOUT, "
                                     "ESRAG_CHUNK_MIN_MB_PER_S)", key=key)
                continue
            if not chunks:
                self.fail_and_remove(label, "empty document (no text)", key=key)
                continue
            chashes = [chunk_hash(c.text, c.context) for c in chunks]
            prefix = chunk_prefix(doc, s.id_scope)
            ids = [chunk_id(prefix, c.chunk_no, ch) for c, ch in zip(chunks, chashes, strict=True)]
            stale = sorted(old_ids.get(key, set()) - set(ids))
            works.append(DocumentWrite(doc, label, h, chunks, ids, chashes, stale))
            with self.lock:
                self.summary.chunks += len(chunks)
        self.put(self.to_embed, works)

    # -- stage 2: embed (the calling thread) -------------------------------------------
    def embed_stage(self) -> None:
        buffer: list[_Record] = []
        group = self.settings.ingest_embed_group
        while True:
            works = self.get(self.to_embed)
            if works is None:
                break
            for w in works:  # the writer holds chunk 0 back as the completion marker
                buffer.extend(_Record(w, i) for i in range(len(w.chunks)))
            if not works or len(buffer) < group:
                self.put(self.to_write, ([], None, None))  # a tick, so progress moves
            while len(buffer) >= group:
                self.embed(buffer[:group])
                buffer = buffer[group:]
        if buffer:
            self.embed(buffer)
        self.put(self.to_write, None)

    def embed(self, records: list[_Record]) -> None:
        vectors = self.embedder.encode_document([r.work.chunks[r.pos].embed_input() for r in records])
        rerank = None
        if self.rerank is not None:  # what the bi-encoder reranker scores: the hit's text alone
            rerank = self.rerank.encode_document([r.work.chunks[r.pos].text for r in records])
        with self.lock:
            self.summary.embedded += len(records)
        self.put(self.to_write, (records, vectors, rerank))

    # -- stage 3: write --------------------------------------------------------------
    def write_stage(self) -> None:
        writer = DocumentWriter(self.client, self.index, self.settings.bulk_max_bytes,
                                self.settings.bulk_max_retries,
                                on_indexed=self.count_indexed, on_deleted=self.count_deleted,
                                on_failed=self.fail)
        language = self.settings.stem_language
        model = self.embedder.info.name
        while True:
            item = self.get(self.to_write)
            if item is None:
                break
            records, vectors, rerank = item
            if records:
                if self.summary.indexed + len(records) >= self.refresh_off_after:
                    self.pause.pause()
                self.pause.renew()
                vecs = np.round(np.asarray(vectors, dtype=np.float64), 6)
                for i, (rec, vec) in enumerate(zip(records, vecs, strict=True)):
                    w = rec.work
                    src = self.source(w, w.chunks[rec.pos], vec, language, model)
                    if rerank is not None:
                        src[RERANK_VECTOR_FIELD] = vector_values(rerank[i])
                    writer.chunk(w, rec.pos, src)
                writer.flush()
            self.emit()
        writer.flush()

    def count_indexed(self, n: int) -> None:
        with self.lock:
            self.summary.indexed += n

    def count_deleted(self, n: int) -> None:
        with self.lock:
            self.summary.deleted += n

    def source(self, w: DocumentWrite, c: Chunk, vec: np.ndarray, language: str,
               model: str) -> dict[str, Any]:
        d = w.doc
        src: dict[str, Any] = {
            "chunk_id": w.ids[c.chunk_no], "doc_id": d.doc_id, "source": d.source, "title": d.title,
            "content_type": d.content_type, "chunk_no": c.chunk_no, "start": c.start, "end": c.end,
            "headings": list(c.headings), "doc_hash": w.doc_hash, "chunk_hash": w.hashes[c.chunk_no],
            "model": model, "text": c.text, "text_stemmed": stem_text(c.text, language),
            "embedding": vec.tolist(),
        }
        if d.modified:
            src["modified"] = d.modified
        if d.metadata:
            src["meta"] = d.metadata
        return src


def _thread(run: _Run, target: Callable[[], None], name: str) -> threading.Thread:
    def body() -> None:
        try:
            target()
        except _Stop:
            pass
        except BaseException as exc:  # handed to the calling thread
            run.errors.append(exc)
            run.stop.set()

    t = threading.Thread(target=body, name=name, daemon=True)
    t.start()
    return t


def ingest_files(
    files: Iterable[Path], settings: Settings, *, client: Elasticsearch | None = None,
    embedder: Embedder | None = None, progress: Callable[[ProgressEvent], None] | None = None,
    refresh_off_after: int | None = None, stamp: dict[str, str] | None = None,
    roots: list[Path] | None = None,
) -> IngestSummary:
    """Ingest ``files`` into the index behind ``settings.index``; return the summary.

    ``stamp`` (metadata key -> value, from a scoped API key) is set on every document,
    overriding the document's own value, and its documents get ids of their own
    (:func:`stamped_doc_id`), so another tenant's copy of the same file is never replaced.
    With ``roots`` (a job submitted over HTTP), each path is resolved again right before it
    is opened and refused when it no longer lies under one of them (a symbolic link swapped
    in after the submit); the resolved path is what gets opened.

    Unchanged documents are skipped before embedding; changed ones replace their chunks.
    Raises ModelMismatch when the index was built with another model, ServiceUnavailable
    when Elasticsearch cannot be reached; per-file problems go into ``summary.failed``.
    """
    own_client = client is None
    client = client if client is not None else make_client(settings)
    try:
        cluster_health(client, settings)
        embedder = embedder if embedder is not None else get_embedder(settings)
        rerank = vector_embedder(settings) if settings.rerank_vectors else None
        index = ensure_index(client, settings, embedder.info, rerank.info if rerank is not None else None)
        off_after = settings.refresh_off_after_chunks if refresh_off_after is None else refresh_off_after
        try:
            with RefreshPause(client, index, lease=settings.refresh_pause_lease) as pause:
                run = _Run(settings, client, embedder, index, list(files), progress, off_after, pause)
                run.rerank = rerank
                run.stamp = dict(stamp or {})
                run.roots = None if roots is None else [Path(os.path.realpath(r)) for r in roots]
                loader = _thread(run, run.load_stage, "esrag-ingest-load")
                writer = _thread(run, run.write_stage, "esrag-ingest-write")
                try:
                    run.embed_stage()
                except _Stop:
                    pass
                except BaseException:
                    run.stop.set()
                    raise
                finally:
                    loader.join()
                    writer.join()
        finally:
            client.indices.refresh(index=index)
        if run.errors:
            raise run.errors[0]
        run.summary.seconds = time.monotonic() - run.started
        run.emit()
        return run.summary
    finally:
        if own_client:
            client.close()


def stamped_doc_id(doc_id: str, stamp: dict[str, str]) -> str:
    """The id of a document ingested under ``stamp``: its own id plus a digest of the stamp."""
    digest = hashlib.sha256(json.dumps(stamp, sort_keys=True).encode()).hexdigest()[:12]
    return f"{doc_id}~{digest}"


def delete_documents(
    settings: Settings, *, doc_ids: list[str] = (), sources: list[str] = (),
    client: Elasticsearch | None = None,
) -> int:
    """Delete every chunk of the given documents (by id, or by source path); return chunks deleted."""
    if not doc_ids and not sources:
        raise EsragError("nothing to delete: give --doc-id or --source")
    own_client = client is None
    client = client if client is not None else make_client(settings)
    try:
        cluster_health(client, settings)
        index = alias_target(client, settings.index)
        if index is None:
            raise EsragError(f"index {settings.index!r} does not exist")
        names = set(sources) | {str(Path(s).expanduser().resolve()) for s in sources}
        should: list[dict[str, Any]] = []
        if doc_ids:
            should.append({"terms": {"doc_id": list(doc_ids)}})
        if names:
            should.append({"terms": {"source": sorted(names)}})
        try:
            deleted = delete_matching(client, index, {"bool": {"should": should, "minimum_should_match": 1}})
        except NotFoundError:
            raise EsragError(f"index {settings.index!r} does not exist") from None
        client.indices.refresh(index=index)
        return deleted
    finally:
        if own_client:
            client.close()

"""The one owner of a document's write: stale chunks, chunk writes, completion marker, rollback.

Protocol, for each new or changed document:
1. Its stale set is every chunk the index holds for it (looked up by ``doc_id``, and
   ``source`` when the document is scoped to its file) that the new version does not
   have; whatever a crashed earlier write left is in that set.
2. Its chunks 1..n-1 are written and its stale chunks deleted, in byte-capped bulk requests.
3. Only when every one of those actions succeeded is chunk 0 written: it carries the
   ``doc_hash`` the next run compares, so it is the completion marker. It goes in a later
   bulk request than any other action of the document.
4. When any action failed the marker is not written (rollback): the document is reported
   once, and the next run sees no matching marker and redoes it. A crash at any point has
   the same effect. So the next ingest replaces or deletes every chunk a crash left.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from elasticsearch import Elasticsearch

from ingest.bulk import BulkWriter, Outcome
from ingest.chunking import Chunk
from ingest.documents import Document

MARKER = -2  # the key of the completion marker action (chunk 0)
STALE = -1  # the key of a stale-chunk delete


@dataclass
class DocumentWrite:
    """One new or changed document on its way into the index."""

    doc: Document
    label: str
    doc_hash: str
    chunks: list[Chunk]
    ids: list[str]
    hashes: list[str]
    stale: list[str]
    began: bool = False  # stale deletes queued
    given: int = 0  # chunks handed to the writer so far
    pending: int = 0  # actions sent (or buffered) whose outcome has not come back
    errors: list[str] = field(default_factory=list)
    marker: dict[str, Any] | None = None
    state: str = "writing"  # writing -> marking -> done | failed


class DocumentWriter:
    """Writes documents with the protocol above through one BulkWriter (not thread-safe).

    ``on_indexed(n)`` and ``on_deleted(n)`` count successful index and delete actions;
    ``on_failed(label, error)`` reports a document whose write failed (once).
    """

    def __init__(self, client: Elasticsearch, index: str, max_bytes: int, max_retries: int, *,
                 on_indexed: Callable[[int], None], on_deleted: Callable[[int], None],
                 on_failed: Callable[[str, str], None]):
        self.index = index
        self.bulk = BulkWriter(client, max_bytes, max_retries=max_retries)
        self.on_indexed = on_indexed
        self.on_deleted = on_deleted
        self.on_failed = on_failed

    def _begin(self, w: DocumentWrite) -> None:
        w.began = True
        for stale in w.stale:
            w.pending += 1
            self._handle(self.bulk.add("delete", self.index, stale, None, (w, STALE)))
        self._maybe_mark(w)

    def chunk(self, w: DocumentWrite, pos: int, source: dict[str, Any]) -> None:
        """Queue chunk ``pos`` of ``w`` (chunk 0 is held back as the completion marker); the
        first chunk of a document also queues the deletes of its stale chunks."""
        if not w.began:
            self._begin(w)
        w.given += 1
        if pos == 0:
            w.marker = source
        else:
            w.pending += 1
            self._handle(self.bulk.add("index", self.index, w.ids[pos], source, (w, pos)))
        self._maybe_mark(w)

    def flush(self) -> None:
        """Send everything buffered, including the markers that become due meanwhile."""
        while True:
            outcomes = self.bulk.flush()
            if not outcomes:
                return
            self._handle(outcomes)

    def _maybe_mark(self, w: DocumentWrite) -> None:
        if w.state != "writing" or w.given < len(w.chunks) or w.pending:
            return
        if w.errors:
            self._fail(w)
            return
        w.state = "marking"
        assert w.marker is not None
        self._handle(self.bulk.add("index", self.index, w.ids[0], w.marker, (w, MARKER)))

    def _fail(self, w: DocumentWrite) -> None:
        w.state = "failed"
        self.on_failed(w.label, f"indexing failed: {w.errors[0]}")

    def _handle(self, outcomes: list[Outcome]) -> None:
        due: list[DocumentWrite] = []
        for o in outcomes:
            w, pos = o.key
            if o.ok and o.op == "index":
                self.on_indexed(1)
            elif o.ok and o.op == "delete" and o.status == 200:
                self.on_deleted(1)
            if not o.ok:
                w.errors.append(o.error or f"HTTP {o.status}")
            if pos == MARKER:
                if o.ok:
                    w.state = "done"
                else:
                    self._fail(w)
                continue
            w.pending -= 1
            if w.pending == 0:
                due.append(w)
        for w in due:
            self._maybe_mark(w)

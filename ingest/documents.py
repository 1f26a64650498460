"""The document model every loader produces, and its stable ids and content hash."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Bump when chunking changes in a way that must re-chunk (and re-embed) everything: it is part
# of every document's hash, so the next ingest redoes each document and deletes its old chunks.
# 2: small sections and small section tails join their neighbour (ESRAG_CHUNK_MIN_TOKENS).
CHUNKER_VERSION = 2


@dataclass(frozen=True)
class Heading:
    """A heading in ``Document.text``: the section it opens starts at ``body_start``."""

    start: int
    body_start: int
    level: int
    text: str


@dataclass
class Document:
    """One document: its text (offsets point into it), headings and metadata."""

    doc_id: str
    source: str
    title: str
    content_type: str
    text: str
    modified: str | None = None
    headings: list[Heading] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)


class LoadError(Exception):
    """A file or record that cannot be loaded; ``source`` names it, the message says why."""

    def __init__(self, source: str, message: str):
        super().__init__(message)
        self.source = source
        self.message = message


def path_doc_id(path: Path) -> str:
    """Stable id of a file's document: sha256 of its resolved absolute path (24 hex digits)."""
    return hashlib.sha256(str(path.resolve()).encode("utf-8", "surrogatepass")).hexdigest()[:24]


JSONL = "application/jsonl"


def doc_key(doc: Document, id_scope: str) -> tuple[str, str | None]:
    """What identifies ``doc`` in the index: (doc_id, source) for a .jsonl record scoped to its
    file (ESRAG_ID_SCOPE=file, the default), (doc_id, None) otherwise (a file's doc_id is
    already its path's hash; with ``global`` a .jsonl id names one document index-wide)."""
    if doc.content_type == JSONL and id_scope == "file":
        return (doc.doc_id, doc.source)
    return (doc.doc_id, None)


def chunk_prefix(doc: Document, id_scope: str) -> str:
    """The document part of its chunk ids: a file-scoped .jsonl id is prefixed by its file's hash,
    so that two files with the same id never write the same chunk id."""
    if doc.content_type == JSONL and id_scope == "file":
        return f"{path_doc_id(Path(doc.source))}/{doc.doc_id}"
    return doc.doc_id


def doc_hash(doc: Document, *, model: str, max_tokens: int, overlap: int, min_tokens: int,
             stem_language: str) -> str:
    """Hash of everything that decides a document's chunks and vectors (not its mtime)."""
    payload = {
        "v": CHUNKER_VERSION, "model": model, "max": max_tokens, "overlap": overlap, "min": min_tokens,
        "stem": stem_language, "source": doc.source, "title": doc.title,
        "content_type": doc.content_type, "meta": doc.metadata, "text": doc.text,
    }
    raw = json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


def chunk_hash(text: str, context: str) -> str:
    """Hash of one chunk's text and the heading context it is embedded with."""
    return hashlib.sha256(f"{context}\x00{text}".encode("utf-8", "surrogatepass")).hexdigest()


def chunk_id(doc_id: str, chunk_no: int, hashed: str) -> str:
    """Deterministic chunk id: ``<doc id>:<ordinal>:<first 12 hex of the chunk hash>``."""
    if len(doc_id.encode("utf-8")) > 400:  # Elasticsearch ids are at most 512 bytes
        doc_id = "h" + hashlib.sha256(doc_id.encode("utf-8")).hexdigest()[:32]
    return f"{doc_id}:{chunk_no}:{hashed[:12]}"

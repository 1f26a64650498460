"""A small chunk corpus written straight through the index contract (no ingest pipeline)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from elasticsearch import Elasticsearch
from elasticsearch.helpers import bulk

from esrag.embedder import get_embedder
from esrag.index import ensure_index, wait_for_count
from esrag.settings import Settings, load_settings
from esrag.stemming import stem_text

# (doc_id, source, content_type, meta, [chunk texts])
DOCS: list[tuple[str, str, str, dict[str, str], list[str]]] = [
    ("python-files", "docs/python/files.md", "text/markdown", {"lang": "en", "team": "python"}, [
        "To read a file line by line in Python, open it with open() and iterate over the file "
        "object in a for loop.",
        "Files should be closed after use. The with statement closes them automatically, even "
        "when an exception is raised.",
    ]),
    ("postgres-vacuum", "docs/postgres/vacuum.html", "text/html", {"lang": "en", "team": "db"}, [
        "VACUUM reclaims storage occupied by dead tuples in PostgreSQL tables.",
    ]),
    ("rust-ownership", "docs/rust/ownership.md", "text/markdown", {"lang": "en", "team": "rust"}, [
        "Each value in Rust has an owner. When the owner goes out of scope, the value is dropped.",
    ]),
    ("secret-notes", "private/secret.md", "text/markdown", {"lang": "en", "team": "secret"}, [
        "Reading files line by line in Python is also possible with readline in a while loop.",
        "Iterating over an open file yields its lines one at a time.",
    ]),
    ("bread", "recipes/bread.txt", "text/plain", {"lang": "en", "team": "kitchen"}, [
        "Bake the bread at 220 degrees for thirty minutes until the crust is golden.",
    ]),
]
N_CHUNKS = sum(len(chunks) for *_, chunks in DOCS)


def chunk_docs() -> list[dict[str, Any]]:
    """The corpus as chunk documents (without embeddings)."""
    out = []
    for doc_id, source, ctype, meta, chunks in DOCS:
        offset = 0
        for no, text in enumerate(chunks):
            out.append({
                "chunk_id": f"{doc_id}#{no}",
                "doc_id": doc_id,
                "source": source,
                "title": doc_id.replace("-", " ").title(),
                "content_type": ctype,
                "chunk_no": no,
                "start": offset,
                "end": offset + len(text),
                "headings": [doc_id.split("-")[0].title()],
                "doc_hash": hashlib.sha1(doc_id.encode()).hexdigest(),
                "chunk_hash": hashlib.sha1(text.encode()).hexdigest(),
                "text": text,
                "text_stemmed": stem_text(text, "english"),
                "meta": meta,
            })
            offset += len(text) + 2
    return out


@contextmanager
def corpus_alias(es: Elasticsearch) -> Iterator[Settings]:
    """Settings with a fresh alias holding the corpus, shared by a module; indices deleted after."""
    settings = load_settings(index=f"test-q-{uuid.uuid4().hex[:10]}")
    try:
        index_corpus(es, settings)
        yield settings
    finally:
        for name in es.indices.get(index=f"{settings.index}*", expand_wildcards="all", allow_no_indices=True):
            es.indices.delete(index=name, ignore_unavailable=True)


def index_corpus(es: Elasticsearch, settings: Settings) -> str:
    """Create the alias's index and write the corpus with real embeddings; return the index name."""
    embedder = get_embedder(settings)
    index = ensure_index(es, settings, embedder.info)
    docs = chunk_docs()
    vectors = embedder.encode_document([d["text"] for d in docs])
    actions = [
        {"_index": index, "_id": d["chunk_id"], "_source": {**d, "model": embedder.name,
                                                          "embedding": v.tolist()}}
        for d, v in zip(docs, vectors, strict=True)
    ]
    bulk(es, actions, refresh="wait_for")
    assert wait_for_count(es, index, len(docs)) == len(docs)
    return index

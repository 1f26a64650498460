"""Real chunks and their all-MiniLM-L6-v2 vectors, computed once and cached for the benchmarks.

    .venv/bin/python bench/real_chunks.py [--docs DIR] [--max-chunks N]

Chunks the HTML pages of the Python 3.11 documentation (Debian's python3.11-doc) with
esrag's own loader and chunker (settings defaults), embeds them with the esrag embedder
(heading context line + text, as ingest does), and saves texts and vectors to
``<cache_dir>/bench/real-chunks-<N>.npz``. Embedding is the slow part on CPU (tens of
chunks per second on 2 cores), so the vectors are reused by quantization.py and heap.py.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DOCS = Path("/usr/share/doc/python3.11/html")


def cache_file(max_chunks: int) -> Path:
    """Where the chunks of a run capped at ``max_chunks`` are kept."""
    from esrag.settings import load_settings

    return load_settings().cache_dir / "bench" / f"real-chunks-{max_chunks}.npz"


def build(docs: Path, max_chunks: int) -> Path:
    """Chunk and embed up to ``max_chunks`` chunks of ``docs`` (pages in sorted order); return the file."""
    from esrag.embedder import get_embedder
    from esrag.settings import load_settings
    from ingest.chunking import HFTokenCounter, chunk_document
    from ingest.documents import Document
    from ingest.loaders import load_file

    settings = load_settings()
    embedder = get_embedder(settings)
    counter = HFTokenCounter(embedder.tokenizer)
    texts: list[str] = []
    inputs: list[str] = []
    sources: list[str] = []
    for path in sorted(docs.rglob("*.html")):
        for doc in load_file(path, settings.max_file_bytes):
            if not isinstance(doc, Document):
                continue
            for c in chunk_document(doc, counter, max_tokens=settings.chunk_max_tokens,
                                    overlap=settings.chunk_overlap_tokens,
                                    model_max_tokens=embedder.max_seq_length):
                texts.append(c.text)
                inputs.append(c.embed_input())
                sources.append(str(path.relative_to(docs)))
        if len(texts) >= max_chunks:
            break
    texts, inputs, sources = texts[:max_chunks], inputs[:max_chunks], sources[:max_chunks]
    t0 = time.perf_counter()
    parts = []
    for i in range(0, len(inputs), 512):
        parts.append(embedder.encode(inputs[i:i + 512]))
        done = i + len(parts[-1])
        print(f"embedded {done}/{len(inputs)} ({done / (time.perf_counter() - t0):.1f}/s)", flush=True)
    vectors = np.concatenate(parts)
    seconds = time.perf_counter() - t0
    out = cache_file(max_chunks)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, vectors=vectors.astype(np.float32), texts=np.array(texts), sources=np.array(sources),
             info=np.array(json.dumps({"model": embedder.info.name, "docs": str(docs), "chunks": len(texts),
                                       "embed_seconds": round(seconds, 1)})))
    return out


def load(max_chunks: int) -> tuple[np.ndarray, list[str], list[str], dict]:
    """Vectors, texts, sources and info of a cached run (built on first use)."""
    path = cache_file(max_chunks)
    if not path.exists():
        build(DOCS, max_chunks)
    data = np.load(path)
    return (data["vectors"], [str(t) for t in data["texts"]], [str(s) for s in data["sources"]],
            json.loads(str(data["info"])))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=Path, default=DOCS)
    ap.add_argument("--max-chunks", type=int, default=20000)
    a = ap.parse_args()
    print(build(a.docs, a.max_chunks))

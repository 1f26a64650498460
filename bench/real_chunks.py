"""Real chunks and their vectors from the configured embedder, computed once and cached for the benchmarks.

    .venv/bin/python bench/real_chunks.py [--docs DIR ...] [--max-chunks N] [--max-tokens T]
                                          [--texts-only]

Chunks the HTML pages of the given documentation folders (default: Debian's python3.11-doc,
then linux-doc, rust-doc and openjdk-17-doc where installed; pages in sorted order) with
esrag's own loader and chunker, embeds them with the esrag embedder (heading context line
+ text, as ingest does), and saves texts and vectors to
``<cache_dir>/bench/real-chunks-<N>-t<T>.npz``. Embedding is the slow part on CPU (about
50 chunks/s at 48 tokens, 15 chunks/s at 200 tokens on 2 cores), so vectors are written
in parts as they are made (a stopped run resumes) and reused by quantization.py and
heap.py. ``--texts-only`` keeps texts and sources without embedding them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DOCS = [Path("/usr/share/doc/python3.11/html"), Path("/usr/share/doc/linux-doc-6.1/html"),
        Path("/usr/share/doc/rust-doc/html"), Path("/usr/share/doc/openjdk-17-doc/api")]
PART = 2048


def embedder_tag() -> str:
    """``all-MiniLM-L6-v2-onnx-int8``: the configured embedder, model, runtime and precision."""
    from esrag.embedder import get_embedder
    from esrag.settings import load_settings

    meta = get_embedder(load_settings()).info.meta()
    return f"{meta['model']}-{meta['runtime']}-{meta['precision']}".replace("/", "_")


def cache_file(max_chunks: int, max_tokens: int, texts_only: bool = False) -> Path:
    """Where the chunks of a run capped at ``max_chunks`` chunks of ``max_tokens`` are kept
    (vectors: one file per embedder, so a default-model change never reuses old vectors)."""
    from esrag.settings import load_settings

    folder = load_settings().cache_dir / "bench"
    if texts_only:
        return folder / f"real-texts-{max_chunks}-t{max_tokens}.npz"
    return folder / f"real-chunks-{max_chunks}-t{max_tokens}-{embedder_tag()}.npz"


def package_name(root: Path) -> str:
    """``linux-doc-6.1`` for /usr/share/doc/linux-doc-6.1/html: the folder that names the package."""
    return root.parent.name if root.name in ("html", "api") else root.name


def chunk_texts(docs: list[Path], max_chunks: int, max_tokens: int,
                overlap: int) -> tuple[list[str], list[str], list[str]]:
    """Texts, embedding inputs and sources of the first ``max_chunks`` chunks of ``docs``."""
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

    def pages() -> Iterator[tuple[Path, Path]]:
        for root in docs:
            if root.is_dir():
                for path in sorted(root.resolve().rglob("*.html")):
                    yield root, path

    for root, path in pages():
        for doc in load_file(path, settings.max_file_bytes):
            if not isinstance(doc, Document):
                continue
            for c in chunk_document(doc, counter, max_tokens=max_tokens, overlap=overlap,
                                    min_tokens=settings.chunk_min_tokens,
                                    model_max_tokens=embedder.max_seq_length):
                texts.append(c.text)
                inputs.append(c.embed_input())
                sources.append(f"{package_name(root)}/{path.relative_to(root.resolve())}")
        if len(texts) >= max_chunks:
            break
        if len(texts) and len(texts) % 10000 < 20:
            print(f"chunked {len(texts)}", flush=True)
    return texts[:max_chunks], inputs[:max_chunks], sources[:max_chunks]


def build(docs: list[Path], max_chunks: int, max_tokens: int = 200, overlap: int = 32,
          texts_only: bool = False) -> Path:
    """Chunk (and unless ``texts_only`` embed) up to ``max_chunks`` chunks of ``docs``; return the file."""
    from esrag.embedder import get_embedder
    from esrag.settings import load_settings

    out = cache_file(max_chunks, max_tokens, texts_only)
    out.parent.mkdir(parents=True, exist_ok=True)
    texts, inputs, sources = chunk_texts(docs, max_chunks, max_tokens, overlap)
    info = {"model": None if texts_only else embedder_tag(), "docs": [str(d) for d in docs],
            "chunks": len(texts), "max_tokens": max_tokens, "overlap_tokens": overlap}
    if texts_only:
        np.savez(out, texts=np.array(texts), sources=np.array(sources), info=np.array(json.dumps(info)))
        return out
    embedder = get_embedder(load_settings())
    parts_dir = out.with_suffix(".parts")
    parts_dir.mkdir(exist_ok=True)
    t0 = time.perf_counter()
    made = 0
    parts = []
    for i in range(0, len(inputs), PART):
        part = parts_dir / f"{i // PART:05d}.npy"
        if not part.exists():
            vecs = embedder.encode_document(inputs[i:i + PART]).astype(np.float32)
            np.save(part.with_suffix(".tmp.npy"), vecs)
            part.with_suffix(".tmp.npy").rename(part)
            made += len(vecs)
            print(f"embedded {i + len(vecs)}/{len(inputs)} ({made / (time.perf_counter() - t0):.1f}/s)",
                  flush=True)
        parts.append(np.load(part))
    vectors = np.concatenate(parts)
    info["embed_seconds_this_run"] = round(time.perf_counter() - t0, 1)
    info["embedded_this_run"] = made
    np.savez(out, vectors=vectors, texts=np.array(texts), sources=np.array(sources),
             info=np.array(json.dumps(info)))
    return out


def load(max_chunks: int, max_tokens: int = 200) -> tuple[np.ndarray, list[str], list[str], dict]:
    """Vectors, texts, sources and info of a cached run (built on first use)."""
    path = cache_file(max_chunks, max_tokens)
    if not path.exists():
        build(DOCS, max_chunks, max_tokens)
    data = np.load(path)
    return (data["vectors"], [str(t) for t in data["texts"]], [str(s) for s in data["sources"]],
            json.loads(str(data["info"])))


def load_prefix(max_chunks: int, max_tokens: int, first: int, overlap: int = 8,
                docs: list[Path] | None = None) -> tuple[np.ndarray, list[str], list[str], dict]:
    """The first ``first`` chunks of a ``max_chunks`` run whose vectors are still being made:
    the finished parts' vectors, and the same chunks' texts (chunking is deterministic)."""
    parts_dir = cache_file(max_chunks, max_tokens).with_suffix(".parts")
    parts = sorted(p for p in parts_dir.glob("*.npy") if not p.name.endswith(".tmp.npy"))
    vectors = np.concatenate([np.load(p) for p in parts])[:first] if parts else np.zeros((0, 0))
    texts, _, sources = chunk_texts(docs or DOCS, len(vectors), max_tokens, overlap)
    info = {"model": embedder_tag(), "docs": [str(d) for d in docs or DOCS], "chunks": len(vectors),
            "max_tokens": max_tokens, "overlap_tokens": overlap,
            "prefix_of": f"the {max_chunks}-chunk run (its first {len(vectors)} chunks)"}
    return vectors, texts, sources, info


def load_texts(max_chunks: int, max_tokens: int = 200,
               docs: list[Path] | None = None) -> tuple[list[str], list[str], dict]:
    """Texts, sources and info of a cached texts-only run of ``docs`` (built on first use; the
    cache file is named by size and tokens only: one texts-only corpus per size)."""
    path = cache_file(max_chunks, max_tokens, texts_only=True)
    if not path.exists():
        build(docs or DOCS, max_chunks, max_tokens, texts_only=True)
    data = np.load(path)
    return [str(t) for t in data["texts"]], [str(s) for s in data["sources"]], json.loads(str(data["info"]))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=Path, nargs="+", default=DOCS)
    ap.add_argument("--max-chunks", type=int, default=20000)
    ap.add_argument("--max-tokens", type=int, default=200)
    ap.add_argument("--overlap", type=int, default=32)
    ap.add_argument("--texts-only", action="store_true")
    a = ap.parse_args()
    print(build(a.docs, a.max_chunks, a.max_tokens, a.overlap, a.texts_only))

"""Chunk sizes with and without the chunk minimum (ESRAG_CHUNK_MIN_TOKENS) on real documents.

For each source (a folder of HTML pages, or a BEIR corpus.jsonl) every document is loaded
with esrag's loaders and chunked with the default embedder's tokenizer and chunk budget,
once with no minimum and once with each given one: chunk counts, chunks under 16 and 24
tokens, the documents whose chunks change, and a few of the smallest chunks as text (what
the minimum is chosen against). Writes bench/results/chunk_sizes.json.

    python -m bench.chunk_sizes /usr/share/doc/valgrind/html /tmp/i14data/python-faq-small/corpus.jsonl
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.machine import machine_info

OUT = Path(__file__).parent / "results" / "chunk_sizes.json"


def documents(source: Path) -> Iterator[Any]:
    """The documents of an HTML folder (recursively) or of one file."""
    from esrag.settings import load_settings
    from ingest.documents import Document
    from ingest.loaders import load_file

    limit = load_settings().max_file_bytes
    paths = sorted(source.rglob("*.html")) if source.is_dir() else [source]
    for path in paths:
        yield from (d for d in load_file(path, limit) if isinstance(d, Document))


def measure(source: Path, minimums: list[int], examples: int = 8) -> dict[str, Any]:
    """Chunk statistics of ``source`` with no minimum and with each of ``minimums``."""
    from esrag.embedder import get_embedder
    from esrag.settings import load_settings
    from ingest.chunking import HFTokenCounter, chunk_document

    settings = load_settings()
    embedder = get_embedder(settings)
    counter = HFTokenCounter(embedder.counting_tokenizer)
    docs = list(documents(source))
    spans: dict[int, list[list[tuple[int, int]]]] = {}
    out: dict[str, Any] = {"source": str(source), "documents": len(docs)}
    for minimum in [0, *minimums]:
        sizes: list[int] = []
        small: list[str] = []
        spans[minimum] = []
        for doc in docs:
            chunks = chunk_document(doc, counter, max_tokens=settings.chunk_max_tokens,
                                    overlap=settings.chunk_overlap_tokens, min_tokens=minimum,
                                    model_max_tokens=embedder.max_seq_length)
            spans[minimum].append([(c.start, c.end) for c in chunks])
            sizes += [c.tokens for c in chunks]
            small += [f"{c.tokens}: {c.text[:100]}" for c in chunks if c.tokens < 24]
        random.seed(13)
        row: dict[str, Any] = {
            "chunks": len(sizes), "under_16": sum(t < 16 for t in sizes),
            "under_24": sum(t < 24 for t in sizes),
            "over_max": sum(t > settings.chunk_max_tokens for t in sizes),
            "examples_under_24": random.sample(small, min(examples, len(small))),
        }
        if minimum:
            row["documents_changed"] = sum(a != b for a, b in zip(spans[0], spans[minimum], strict=True))
        out[f"min_{minimum}"] = row
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sources", nargs="+", type=Path)
    parser.add_argument("--minimums", default="16", help="comma-separated minimums to compare with 0")
    args = parser.parse_args()
    minimums = [int(m) for m in args.minimums.split(",") if m.strip()]
    machine = machine_info()
    machine["command"] = "python -m bench.chunk_sizes " + " ".join(map(str, args.sources)) + (
        f" --minimums {args.minimums}")
    data = json.loads(OUT.read_text()) if OUT.exists() else {}
    data.setdefault("runs", [])
    run: dict[str, Any] = {"machine": machine, "results": []}
    data["runs"].append(run)
    for source in args.sources:
        run["results"].append(measure(source, minimums))
        print(json.dumps({k: v for k, v in run["results"][-1].items()}, indent=1)[:2000], flush=True)
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()

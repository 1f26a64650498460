"""Chunker benchmark: MB/s on a 50 MiB text file (real prose, then adversarial input).

    .venv/bin/python bench/chunking.py [--docs DIR] [--mib 50] [--adversarial-mib 8]

The real file is the text of Debian's python3.11-doc HTML pages (esrag's own HTML loader),
repeated until it reaches ``--mib`` MiB (the default ESRAG_MAX_FILE_BYTES); it is loaded
with the .txt loader and chunked with the default embedder's tokenizer and the default
chunk settings, as ingest does. The adversarial file mixes long whitespace runs, blank
lines, lines of "x  " and runs of punctuation: the shapes that made the old sentence
splitter quadratic. The old and new sentence separators are also timed side by side on
one 32,000-space run. Writes bench/results/chunking.json with the machine's facts.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

OLD_SENT_SEP = re.compile(r"(?<=[.!?])[\"')\]]*\s+|\s*\n\s*")  # before the fix, for the side-by-side


def real_text(docs: Path, size: int) -> str:
    """Text of the HTML pages under ``docs``, repeated to ``size`` bytes of UTF-8."""
    from ingest.documents import Document
    from ingest.loaders import load_file

    parts: list[str] = []
    total = 0
    for path in sorted(docs.rglob("*.html")):
        for doc in load_file(path, 50 * 1024 * 1024):
            if isinstance(doc, Document):
                parts.append(doc.text)
                total += len(doc.text.encode("utf-8"))
        if total >= size:
            break
    if not parts:
        raise SystemExit(f"no HTML pages under {docs}")
    base = "\n\n".join(parts)
    text = base
    while len(text.encode("utf-8")) < size:
        text += "\n\n" + base
    return text.encode("utf-8")[:size].decode("utf-8", "ignore")


def adversarial_text(size: int) -> str:
    """Whitespace runs, blank-line runs, "x  " lines and punctuation runs, to ``size`` chars."""
    block = (
        "start" + " " * 400_000 + "end.\n"
        + "x  \n" * 50_000
        + "\n \n\t\n" * 50_000
        + "Why?!" * 20_000 + " " + "." * 100_000 + "\n"
        + ". " * 100_000 + "\n"
        + '"' * 50_000 + ")" * 50_000 + "\n"
        + "word " * 100_000 + "\n\n"
    )
    return (block * (size // len(block) + 1))[:size]


def time_chunking(path: Path, settings: object, counter: object, model_max: int) -> dict[str, object]:
    from ingest.chunking import chunk_document
    from ingest.loaders import load_text

    t0 = time.perf_counter()
    doc = load_text(path)
    t1 = time.perf_counter()
    chunks = chunk_document(doc, counter, max_tokens=settings.chunk_max_tokens,  # type: ignore[attr-defined]
                            overlap=settings.chunk_overlap_tokens,  # type: ignore[attr-defined]
                            min_tokens=settings.chunk_min_tokens,  # type: ignore[attr-defined]
                            model_max_tokens=model_max)
    t2 = time.perf_counter()
    mib = path.stat().st_size / 2**20
    return {"file_mib": round(mib, 2), "load_seconds": round(t1 - t0, 2), "chunk_seconds": round(t2 - t1, 2),
            "chunks": len(chunks), "chunk_mib_per_s": round(mib / (t2 - t1), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", default="/usr/share/doc/python3.11/html")
    ap.add_argument("--mib", type=float, default=50.0)
    ap.add_argument("--adversarial-mib", type=float, default=8.0)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "chunking.json"))
    args = ap.parse_args()

    from bench.machine import machine_info
    from esrag.embedder import get_embedder
    from esrag.settings import load_settings
    from ingest.chunking import _SENT_SEP, HFTokenCounter

    settings = load_settings()
    embedder = get_embedder(settings)
    counter = HFTokenCounter(embedder.counting_tokenizer)
    result: dict[str, object] = {
        "machine": machine_info(), "model": embedder.info.name,
        "chunk_max_tokens": settings.chunk_max_tokens, "chunk_overlap_tokens": settings.chunk_overlap_tokens,
    }
    run = " " * 32_000
    t0 = time.perf_counter()
    list(OLD_SENT_SEP.finditer("a" + run + "b"))
    t1 = time.perf_counter()
    list(_SENT_SEP.finditer("a" + run + "b"))
    t2 = time.perf_counter()
    result["sentence_split_32000_spaces"] = {"old_seconds": round(t1 - t0, 4),
                                             "new_seconds": round(t2 - t1, 6)}
    print(json.dumps(result["sentence_split_32000_spaces"]), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        real = Path(tmp) / "real.txt"
        real.write_text(real_text(Path(args.docs), int(args.mib * 2**20)), encoding="utf-8")
        timed = time_chunking(real, settings, counter, embedder.max_seq_length)
        result["real"] = {"source": args.docs, **timed}
        print(json.dumps(result["real"]), flush=True)
        real.unlink()
        adv = Path(tmp) / "adversarial.txt"
        adv.write_text(adversarial_text(int(args.adversarial_mib * 2**20)), encoding="utf-8")
        result["adversarial"] = time_chunking(adv, settings, counter, embedder.max_seq_length)
        print(json.dumps(result["adversarial"]), flush=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

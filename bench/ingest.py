"""Ingest benchmark: end-to-end throughput vs. bare embedding, and peak RSS at 1x and Nx corpus.

    .venv/bin/python bench/ingest.py [--docs DIR] [--include SUB ...] [--bare-sample N]
                                     [--rss-base SUB] [--scale 10]

Run 1 ingests the HTML pages of the docs folder (or of its ``--include`` subfolders) into a
fresh index; a separate process then chunks the same pages and embeds the same chunks bare
(same model, same encode call sizes; with ``--bare-sample N`` an evenly spaced sample of
about N of them, for slow machines). The memory runs ingest ``--rss-base`` once and then
``--scale`` copies of it (hard links in a temporary folder, so each copy has its own paths
and document ids) into fresh indices, and compare peak RSS. Each run is a child process,
so each peak RSS is its own. Writes bench/results/ingest.json. Needs `esrag up`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def machine_info() -> dict:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import psutil

    from esrag.es import make_client
    from esrag.settings import load_settings

    client = make_client(load_settings())
    nodes = client.nodes.info(filter_path="nodes.*.version")
    es_version = sorted({n["version"] for n in nodes["nodes"].values()})
    client.close()
    return {
        "cpu_count": os.cpu_count(), "cpu_affinity": len(os.sched_getaffinity(0)), "cpu_model": model,
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1), "python": platform.python_version(),
        "elasticsearch": ",".join(es_version), "load_average_at_start": os.getloadavg(),
    }


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    """CPU time of this process (all threads): less sensitive than wall time to other load."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def child_ingest(folders: list[str], index: str, bare_sample: int = -1) -> dict:
    from esrag.embedder import get_embedder
    from esrag.settings import load_settings
    from ingest.pipeline import ingest_files
    from ingest.sources import expand_paths

    settings = load_settings(index=index)
    embedder = get_embedder(settings)
    embedder.encode_document(["warm up"] * 8)
    rss_before = peak_rss_mb()
    files = expand_paths([f"{f}/**/*.html" for f in folders], settings)
    t0, c0 = time.perf_counter(), cpu_seconds()
    summary = ingest_files(files, settings, embedder=embedder)
    seconds, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    out = {
        "files": len(files), "documents": summary.documents, "chunks": summary.chunks,
        "indexed": summary.indexed, "failed": len(summary.failed), "seconds": round(seconds, 2),
        "chunks_per_s": round(summary.indexed / seconds, 2), "cpu_seconds": round(cpu, 1),
        "chunks_per_cpu_s": round(summary.indexed / cpu, 3),
        "peak_rss_mb": round(peak_rss_mb(), 1), "rss_after_model_load_mb": round(rss_before, 1),
        "index": summary.index, "load_average": os.getloadavg(),
    }
    if bare_sample >= 0:  # after the ingest, so its peak RSS above is the pipeline's own
        out["bare"] = child_bare(folders, bare_sample, embedder)
    return out


def child_bare(folders: list[str], sample: int, embedder=None) -> dict:
    from esrag.embedder import get_embedder
    from esrag.settings import load_settings
    from ingest.chunking import HFTokenCounter, chunk_document
    from ingest.loaders import load_file
    from ingest.sources import expand_paths

    settings = load_settings()
    embedder = embedder or get_embedder(settings)
    counter = HFTokenCounter(embedder.tokenizer)
    inputs: list[str] = []
    t0 = time.perf_counter()
    for f in expand_paths([f"{f}/**/*.html" for f in folders], settings):
        for doc in load_file(f, settings.max_file_bytes):
            if hasattr(doc, "text"):
                inputs += [c.embed_input() for c in chunk_document(
                    doc, counter, max_tokens=settings.chunk_max_tokens,
                    overlap=settings.chunk_overlap_tokens, min_tokens=settings.chunk_min_tokens,
                    model_max_tokens=embedder.max_seq_length)]
    parse_chunk_seconds = time.perf_counter() - t0
    total = len(inputs)
    if sample and sample < total:
        step = total / sample
        inputs = [inputs[int(i * step)] for i in range(sample)]
    embedder.encode_document(["warm up"] * 8)
    t0, c0 = time.perf_counter(), cpu_seconds()
    group = settings.ingest_embed_group
    for i in range(0, len(inputs), group):
        embedder.encode_document(inputs[i:i + group])
    seconds, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    return {
        "chunks_total": total, "chunks_embedded": len(inputs), "seconds": round(seconds, 2),
        "chunks_per_s": round(len(inputs) / seconds, 2), "cpu_seconds": round(cpu, 1),
        "chunks_per_cpu_s": round(len(inputs) / cpu, 3), "load_average": os.getloadavg(),
        "parse_and_chunk_seconds_single_thread": round(parse_chunk_seconds, 2),
    }


def spawn(args: list[str]) -> dict:
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"child {args} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def drop_index(alias: str) -> None:
    from esrag.es import make_client
    from esrag.settings import load_settings

    client = make_client(load_settings())
    for name in client.indices.get(index=f"{alias}-*", allow_no_indices=True):
        client.indices.delete(index=name)
    client.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", default="/usr/share/doc/python3.11/html")
    ap.add_argument("--include", nargs="*", default=[], help="subfolders of --docs for run 1")
    ap.add_argument("--bare-sample", type=int, default=0, help="0: all chunks; -1: none (child only)")
    ap.add_argument("--rss-base", default="", help="subfolder of --docs for the memory runs")
    ap.add_argument("--scale", type=int, default=10)
    ap.add_argument("--child", choices=["ingest", "bare"])
    ap.add_argument("--index", default="")
    ap.add_argument("folders", nargs="*")
    ap.add_argument("--keep", action="store_true", help="keep the benchmark indices")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "ingest.json"))
    args = ap.parse_args()
    if args.child == "ingest":
        print(json.dumps(child_ingest(args.folders, args.index, args.bare_sample)))
        return
    if args.child == "bare":
        print(json.dumps(child_bare(args.folders, args.bare_sample)))
        return

    stamp = time.strftime("%Y%m%d%H%M%S")
    result: dict = {"machine": machine_info(), "corpus": args.docs, "started": stamp}
    from esrag.settings import load_settings

    s = load_settings()
    result["settings"] = {"model": s.embed_model, "chunk_max_tokens": s.chunk_max_tokens,
                          "chunk_overlap_tokens": s.chunk_overlap_tokens, "bulk_max_bytes": s.bulk_max_bytes,
                          "embed_batch_size": s.embed_batch_size, "vector_index_type": s.vector_index_type}
    docs = Path(args.docs)
    run1_folders = [str(docs / sub) for sub in args.include] or [str(docs)]
    base = [str(docs / args.rss_base)] if args.rss_base else run1_folders
    result["run_1"] = {"folders": run1_folders}
    aliases = [f"bench-ingest-{stamp}", f"bench-ingest-base-{stamp}", f"bench-ingest-x{args.scale}-{stamp}"]
    try:
        run1 = spawn(["--child", "ingest", "--index", aliases[0], "--bare-sample", str(args.bare_sample),
                      *run1_folders])
        bare = run1.pop("bare")
        result["run_1"].update(run1)
        result["bare_embedding"] = bare
        result["end_to_end_vs_bare"] = round(run1["chunks_per_s"] / bare["chunks_per_s"], 3)
        result["end_to_end_vs_bare_per_cpu_second"] = round(
            run1["chunks_per_cpu_s"] / bare["chunks_per_cpu_s"], 3)
        if base == run1_folders:
            small = run1
        else:
            small = spawn(["--child", "ingest", "--index", aliases[1], "--bare-sample", "-1", *base])
        tmp = Path(tempfile.mkdtemp(prefix="esrag-bench-"))
        try:
            copies = []
            for i in range(args.scale):
                for k, folder in enumerate(base):
                    dest = tmp / f"copy{i}-{k}"
                    skip = shutil.ignore_patterns("_sources", "_static", "_images", "_downloads")
                    shutil.copytree(folder, dest, copy_function=os.link, ignore=skip)
                    copies.append(str(dest))
            big = spawn(["--child", "ingest", "--index", aliases[2], "--bare-sample", "-1", *copies])
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        result["memory"] = {
            "base": {"folders": base, **small}, f"x{args.scale}": big, "scale": args.scale,
            "chunks_ratio": round(big["chunks"] / small["chunks"], 2),
            "peak_rss_ratio": round(big["peak_rss_mb"] / small["peak_rss_mb"], 3),
        }
        result["load_average_at_end"] = os.getloadavg()
    finally:
        if not args.keep:
            for alias in aliases:
                drop_index(alias)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

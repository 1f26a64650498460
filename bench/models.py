"""Embedding models x runtimes side by side: ingest speed and retrieval quality.

For every candidate (model, runtime, precision):
- speed: chunks per CPU-second (and per wall-second) embedding the same sample of real
  chunks (Python documentation pages, esrag's own loader and chunker, the embedding
  input the pipeline builds), each candidate in this one process, one after another;
- quality: dense and hybrid nDCG@10 (Recall@100, MRR@10, p50) of each eval set given, via
  the eval machinery (query.eval.runner): the set's corpus ingested into an index of its own
  per candidate, every judged query run.

Results merge into the JSON file (one run may add the full sets for the leading candidates
to the slices of an earlier run); each entry carries the date and machine of its run.

    python -m bench.models --sets /data/python-faq-small,/data/chatterbot-small
    python -m bench.models --sets /data/python-faq --candidates bge-small-en-v1.5/onnx/int8 --no-speed
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bench.machine import machine_info

CANDIDATES = [
    "all-MiniLM-L6-v2/torch/fp32",
    "all-MiniLM-L6-v2/onnx/fp32",
    "all-MiniLM-L6-v2/onnx/int8",
    "bge-small-en-v1.5/onnx/fp32",
    "bge-small-en-v1.5/onnx/int8",
    "e5-small-v2/onnx/fp32",
    "e5-small-v2/onnx/int8",
]
DOCS = [Path("/usr/share/doc/python3.11/html/library")]
OUT = Path(__file__).parent / "results" / "models.json"


def candidate_settings(base, candidate: str):
    """Settings of one candidate ``model/runtime/precision``."""
    from query.eval.runner import with_settings

    model, runtime, precision = candidate.split("/")
    return with_settings(base, embed_model=model, embed_runtime=runtime, embed_precision=precision)


def sample_inputs(n: int) -> list[str]:
    """Embedding inputs of the first ``n`` chunks of the Python library pages (the same for all)."""
    from bench.real_chunks import chunk_texts

    _, inputs, _ = chunk_texts(DOCS, n, 200, 32)
    return inputs


def speed(base, candidates: list[str], inputs: list[str]) -> dict[str, dict]:
    """Chunks per CPU-second and per wall-second of encode_document on ``inputs``, per candidate."""
    from esrag.embedder import get_embedder

    out = {}
    for cand in candidates:
        emb = get_embedder(candidate_settings(base, cand))
        emb.encode_document(inputs[:16])  # warm up (graph optimisation, first allocations)
        c0, w0 = time.process_time(), time.perf_counter()
        for i in range(0, len(inputs), 512):
            emb.encode_document(inputs[i:i + 512])
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
        out[cand] = {"chunks": len(inputs), "cpu_s": round(cpu, 2), "wall_s": round(wall, 2),
                     "chunks_per_cpu_s": round(len(inputs) / cpu, 2),
                     "chunks_per_wall_s": round(len(inputs) / wall, 2)}
        print(cand, out[cand], flush=True)
    return out


def quality(base, candidates: list[str], sets: list[Path], modes: list[str]) -> dict[str, dict]:
    """{set: {candidate: {mode: metrics, "ingest": {...}}}} via the eval runner."""
    from esrag.embedder import get_embedder
    from esrag.index import model_slug
    from query.eval.beir import load_dataset
    from query.eval.runner import evaluate_dataset

    out: dict[str, dict] = {}
    for folder in sets:
        dataset = load_dataset(folder)
        for cand in candidates:
            settings = candidate_settings(base, cand)
            emb = get_embedder(settings)
            alias = f"bench-models-{model_slug(folder.name)}-{model_slug(cand)}"
            c0, w0 = time.process_time(), time.perf_counter()
            res = evaluate_dataset(settings, dataset, modes, index=alias, embedder=emb)
            res["seconds"] = {"cpu": round(time.process_time() - c0, 1),
                              "wall": round(time.perf_counter() - w0, 1)}
            res["date"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            out.setdefault(folder.name, {})[cand] = res
            ndcg = {m: round(r["ndcg@10"], 4) for m, r in res["results"].items()}
            print(folder.name, cand, ndcg, flush=True)
            save({"quality": {folder.name: {cand: res}}})  # a killed run keeps what it measured
    return out


def save(update: dict) -> None:
    """Merge ``update`` into OUT: speed replaces speed, quality merges per set and candidate."""
    data = json.loads(OUT.read_text()) if OUT.exists() else {}
    if "speed" in update:
        data["speed"] = update["speed"]
    for name, per in update.get("quality", {}).items():
        data.setdefault("quality", {}).setdefault(name, {}).update(per)
    if "machine" in update:
        data.setdefault("machines", []).append(update["machine"])
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(data, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", default="", help="comma-separated BEIR folders (esrag eval-build)")
    parser.add_argument("--candidates", default=",".join(CANDIDATES))
    parser.add_argument("--modes", default="dense,hybrid")
    parser.add_argument("--speed-chunks", type=int, default=400)
    parser.add_argument("--no-speed", action="store_true")
    args = parser.parse_args()

    from esrag.settings import load_settings

    base = load_settings()
    candidates = [c.strip() for c in args.candidates.split(",") if c.strip()]
    machine = machine_info()
    machine["command"] = "python -m bench.models " + " ".join(
        f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items())
    save({"machine": machine})
    if not args.no_speed:
        inputs = sample_inputs(args.speed_chunks)
        result = speed(base, candidates, inputs)
        save({"speed": {"date": machine["date"], "sample": f"first {len(inputs)} chunks of {DOCS[0]}",
                        "results": result}})
    sets = [Path(s) for s in args.sets.split(",") if s.strip()]
    if sets:
        quality(base, candidates, sets, args.modes.split(","))


if __name__ == "__main__":
    main()

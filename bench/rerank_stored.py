"""Second stage with stored vectors (ESRAG_RERANK_VECTORS) vs encoded at query time, side by side.

    .venv/bin/python -m bench.rerank_stored NAME=DIR[:LIMIT] ... [--out bench/results/rerank_stored.json]

For each eval set (BEIR folder): its corpus is ingested into two fresh aliases with the
default first stage, ``bench-rerank-<name>-plain`` (no stored vectors) and
``bench-rerank-<name>-rv`` (ESRAG_RERANK_VECTORS=true); each ingest's CPU seconds (this
process: every thread of load, chunk, embed and write; Elasticsearch not counted) give
chunks per CPU-second. The disk the stored vectors take is read from Elasticsearch's
``_disk_usage`` analysis. Then ``esrag eval DIR --mode hybrid,hybrid+rerank --index ALIAS
--json [--limit N]`` runs once per alias, each in a fresh process (the passage cache starts
cold): nDCG@10, p50/p95 per query, the share of reranked hits scored with stored vectors.
Needs `esrag up`. The aliases are deleted at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.machine import machine_info  # noqa: E402
from esrag.es import make_client  # noqa: E402
from esrag.settings import Settings, load_settings  # noqa: E402


def cpu_seconds() -> float:
    """User + system CPU seconds of this process, all threads."""
    t = psutil.Process().cpu_times()
    return t.user + t.system


def drop(client: Any, alias: str) -> None:
    for name in client.indices.get(index=f"{alias}*", expand_wildcards="all", allow_no_indices=True):
        client.indices.delete(index=name, ignore_unavailable=True)


def ingest(settings: Settings, corpus: Path) -> dict[str, Any]:
    """Ingest ``corpus`` with models loaded beforehand; chunks and CPU seconds of the ingest alone."""
    from esrag.embedder import get_embedder
    from esrag.rerank_model import vector_embedder
    from ingest.pipeline import ingest_files

    get_embedder(settings)
    if settings.rerank_vectors:
        vector_embedder(settings)
    c0, w0 = cpu_seconds(), time.monotonic()
    summary = ingest_files([corpus], settings)
    cpu, wall = cpu_seconds() - c0, time.monotonic() - w0
    assert not summary.failed, summary.failed[:1]
    return {"chunks": summary.indexed, "cpu_s": round(cpu, 1), "wall_s": round(wall, 1),
            "chunks_per_cpu_s": round(summary.indexed / cpu, 2), "load_avg": list(os.getloadavg())}


def disk(client: Any, alias: str) -> dict[str, Any]:
    """Store size and the stored-vector field's bytes (``_disk_usage``), per chunk."""
    from esrag.index import alias_target
    from esrag.rerank_model import RERANK_VECTOR_FIELD

    index = alias_target(client, alias)
    client.indices.forcemerge(index=index, max_num_segments=1)
    client.indices.refresh(index=index)
    chunks = int(client.count(index=index)["count"])
    usage = client.perform_request("POST", f"/{index}/_disk_usage", params={"run_expensive_tasks": "true"},
                                   headers={"accept": "application/json"}).body[index]
    fields = usage.get("fields", {})
    field = fields.get(RERANK_VECTOR_FIELD, {})
    source = fields.get("_source", {})
    return {
        "chunks": chunks, "store_bytes": usage["store_size_in_bytes"],
        "store_bytes_per_chunk": round(usage["store_size_in_bytes"] / chunks),
        "_source_bytes_per_chunk": round(source.get("total_in_bytes", 0) / chunks),
        "rerank_vector_bytes_per_chunk": round(field.get("total_in_bytes", 0) / chunks),
        "rerank_vector_detail": {k: v for k, v in field.items() if k.endswith("_in_bytes")},
    }


def response_bytes(client: Any, alias: str, dataset: Path) -> dict[str, Any]:
    """Bytes of one hybrid search (both legs, 50 each) and of the vectors fetched for 50 hits."""
    from esrag.rerank_model import RERANK_VECTOR_FIELD
    from query.retrieval import bm25_body, knn_body, resolve_index

    settings = load_settings(index=alias)
    index, _ = resolve_index(client, settings)
    query = json.loads((dataset / "queries.jsonl").read_text().splitlines()[0])["text"]
    from esrag.embedder import get_embedder

    vector = get_embedder(settings).encode_query([query])[0].tolist()
    searches = [{"index": index}, bm25_body(query, query, 50, None), {"index": index},
                knn_body(vector, 50, settings.num_candidates, None, settings.knn_oversample)]
    legs = client.msearch(searches=searches)
    ids = [h["_id"] for h in legs["responses"][0]["hits"]["hits"]][:50]
    vecs = client.mget(index=index, ids=ids, source_includes=[RERANK_VECTOR_FIELD], realtime=False)
    return {"hybrid_legs_bytes": len(json.dumps(legs.body)),
            "rerank_vectors_fetch_bytes": len(json.dumps(vecs.body)), "rerank_vectors_fetched": len(ids)}


def evaluate(dataset: Path, alias: str, limit: int | None, stored: bool) -> dict[str, Any]:
    """`esrag eval` in a fresh process; its JSON, wall and CPU seconds."""
    cmd = [str(ROOT / ".venv/bin/esrag"), "eval", str(dataset), "--mode", "hybrid,hybrid+rerank",
           "--index", alias, "--json"] + (["--limit", str(limit)] if limit else [])
    env = {k: v for k, v in os.environ.items() if k != "ESRAG_RERANK_VECTORS"}
    if stored:
        env["ESRAG_RERANK_VECTORS"] = "true"  # so the eval's own ingest finds every document unchanged
    load = list(os.getloadavg())
    c0, w0 = os.times(), time.monotonic()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    c1, wall = os.times(), time.monotonic() - w0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr[-2000:]}")
    shown = " ".join(["ESRAG_RERANK_VECTORS=true"] if stored else []) + " esrag " + " ".join(cmd[1:])
    return {"command": shown.strip(), "load_avg_at_start": load, "wall_s": round(wall, 1),
            "cpu_s": round(c1.children_user - c0.children_user + c1.children_system - c0.children_system, 1),
            "result": json.loads(proc.stdout)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("sets", nargs="+", help="NAME=DIR[:LIMIT]")
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/rerank_stored.json")
    ap.add_argument("--keep", action="store_true", help="keep the bench aliases")
    ap.add_argument("--stored-only", action="store_true",
                    help="only the stored-vector alias: ingest, disk, eval (no encoded side)")
    ap.add_argument("--append", metavar="SUFFIX",
                    help="add the sets to the existing --out file as NAME+SUFFIX, with machine info")
    args = ap.parse_args()
    client = make_client(load_settings())
    nodes = client.nodes.info(filter_path="nodes.*.version")["nodes"]
    es_version = ",".join(sorted({n["version"] for n in nodes.values()}))
    command = "python -m bench.rerank_stored " + " ".join(args.sets) + (
        " --stored-only" if args.stored_only else "") + (f" --append {args.append}" if args.append else "")
    out: dict[str, Any] = {"machine": machine_info(es_version), "command": command, "sets": {}}
    if args.append:
        out = json.loads(args.out.read_text())
    base = load_settings()
    out["settings"] = {"embed_model": base.embed_model, "embed_precision": base.embed_precision,
                       "rerank_model": base.rerank_model or "all-mpnet-base-v2",
                       "rerank_depth": base.rerank_depth, "rerank_cache_size": base.rerank_cache_size}
    for spec in args.sets:
        name, _, rest = spec.partition("=")
        folder, _, lim = rest.partition(":")
        dataset, limit = Path(folder), int(lim) if lim else None
        plain, rv = f"bench-rerank-{name}-plain", f"bench-rerank-{name}-rv"
        row: dict[str, Any] = {"dataset": str(dataset), "limit": limit}
        if args.append:
            row.update(machine=machine_info(es_version), command=command)
        try:
            for alias in (plain, rv):
                drop(client, alias)
            if not args.stored_only:
                print(f"{name}: ingest without stored vectors", file=sys.stderr, flush=True)
                row["ingest_plain"] = ingest(load_settings(index=plain), dataset / "corpus.jsonl")
            print(f"{name}: ingest with stored vectors", file=sys.stderr, flush=True)
            row["ingest_stored"] = ingest(load_settings(index=rv).model_copy(update={"rerank_vectors": True}),
                                          dataset / "corpus.jsonl")
            if not args.stored_only:
                row["ingest_cost_ratio"] = round(row["ingest_plain"]["chunks_per_cpu_s"]
                                                 / row["ingest_stored"]["chunks_per_cpu_s"], 2)
                row["disk_plain"] = disk(client, plain)
            row["disk_stored"] = disk(client, rv)
            row["response"] = response_bytes(client, rv, dataset)
            print(f"{name}: eval, stored vectors", file=sys.stderr, flush=True)
            row["eval_stored"] = evaluate(dataset, rv, limit, stored=True)
            if not args.stored_only:
                print(f"{name}: eval, encoded at query time", file=sys.stderr, flush=True)
                row["eval_encoded"] = evaluate(dataset, plain, limit, stored=False)
        finally:
            if not args.keep:
                for alias in (plain, rv):
                    drop(client, alias)
        out["sets"][name + (args.append or "")] = row
        args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

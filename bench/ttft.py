"""Time to first token of a warm `esrag serve` answering /v1/ask (stream) with the local LLM backend
(or, for the configuration ``extractive``, the default extractive backend).

For each configuration (model, binding, threads, prompt threads, batch, passage-token budget,
prefix cache) it starts `esrag serve` on a free loopback port, warms it with one question (the
model loads once), then streams --questions FAQ questions through /v1/ask with k=5 passages.
Per answer: wall time to the first token event (retrieval included), the server process's CPU
seconds to that point (all threads), prompt tokens, prompt tokens/s and generated tokens/s,
and the load average. Writes bench/results/ttft.json.

    python -m bench.query --ttft --ttft-configs 'qwen2.5-coder-0.5b-instruct,threads=1' --questions 10
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench.load import ROOT, free_port, served_api
from bench.machine import machine_info

OUT = ROOT / "bench" / "results" / "ttft.json"
RETRIEVAL_TIMINGS = ("embed_ms", "es_ms", "fusion_ms", "rerank_ms")
# What a configuration may set, with the ESRAG_* variable each one becomes.
KNOBS = {"binding": "ESRAG_LLM_BINDING", "threads": "ESRAG_LLM_THREADS",
         "prompt_threads": "ESRAG_LLM_PROMPT_THREADS", "batch": "ESRAG_LLM_BATCH",
         "context": "ESRAG_ASK_CONTEXT_TOKENS", "prefix_cache": "ESRAG_LLM_PREFIX_CACHE"}


def parse_config(spec: str) -> dict[str, str]:
    """``"MODEL,threads=1,context=600"`` -> {"model": MODEL, "threads": "1", "context": "600"}."""
    model, *pairs = [p.strip() for p in spec.split(",")]
    out = {"model": model}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in KNOBS:
            raise SystemExit(f"ttft: bad config item {pair!r} (one of {', '.join(KNOBS)}=VALUE)")
        out[key] = value
    return out


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(round(p / 100 * len(ordered) + 0.5)) - 1))
    return round(ordered[rank], 3)


def cpu_seconds(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


def ask_once(url: str, question: str, server: psutil.Process, timeout: float) -> dict[str, Any]:
    """Stream one /v1/ask; wall and server CPU seconds to the first token, and the done event."""
    cpu0, t0 = cpu_seconds(server), time.perf_counter()
    first_s = first_cpu = None
    done: dict[str, Any] = {}
    event = ""
    with httpx.stream("POST", f"{url}/v1/ask", json={"question": question, "k": 5, "stream": True},
                      timeout=timeout) as resp:
        resp.raise_for_status()
        for line in resp.iter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                if event == "token" and first_s is None:
                    first_s, first_cpu = time.perf_counter() - t0, cpu_seconds(server) - cpu0
                elif event == "done":
                    done = json.loads(line[5:])
                elif event == "error":
                    raise RuntimeError(line)
    timings = done.get("timings_ms", {})
    gen_ms, first_ms = timings.get("generate_ms"), timings.get("first_token_ms")
    pieces = timings.get("pieces", 0)
    prefill = timings.get("prefill_tokens", timings.get("prompt_tokens"))
    return {
        "ttft_s": round(first_s, 3) if first_s is not None else None,
        "ttft_cpu_s": round(first_cpu, 3) if first_cpu is not None else None,
        "retrieval_ms": round(sum(timings.get(k, 0) for k in RETRIEVAL_TIMINGS), 1),
        "model_first_token_ms": first_ms,
        "prompt_tokens": timings.get("prompt_tokens"),
        "prefill_tokens": prefill,
        "prompt_tokens_per_s": round(prefill / (first_ms / 1000), 1) if prefill and first_ms else None,
        "gen_tokens_per_s": (round((pieces - 1) / ((gen_ms - first_ms) / 1000), 1)
                             if pieces > 1 and gen_ms and first_ms and gen_ms > first_ms else None),
        "pieces": pieces,
        "load_1m": round(os.getloadavg()[0], 2),
    }


def run_config(config: dict[str, str], index: str, questions: list[str], max_tokens: int,
               timeout: float) -> dict[str, Any]:
    """One served configuration: warm it, then the per-question figures and their summary."""
    env = {**os.environ, "ESRAG_INDEX": index, "ESRAG_LLM_MAX_TOKENS": str(max_tokens),
           "ESRAG_API_KEYS": "[]", "ESRAG_RATE_LIMIT_PER_MINUTE": "0"}
    if config["model"] == "extractive":  # the default backend: no model, sentences of the passages
        env["ESRAG_LLM_BACKEND"] = "extractive"
    else:
        env.update({"ESRAG_LLM_BACKEND": "local", "ESRAG_LLM_LOCAL_MODEL": config["model"]})
    env.update({KNOBS[k]: v for k, v in config.items() if k in KNOBS})
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with served_api(env, port) as proc:
        server = psutil.Process(proc.pid)
        t = time.perf_counter()
        ask_once(url, questions[0], server, timeout)  # loads the model: not counted
        warm_s = time.perf_counter() - t
        rows = [{"question": q, **ask_once(url, q, server, timeout)} for q in questions]
    ttft = [r["ttft_s"] for r in rows if r["ttft_s"] is not None]
    cpu = [r["ttft_cpu_s"] for r in rows if r["ttft_cpu_s"] is not None]

    def median(key: str) -> float | None:
        xs = [r[key] for r in rows if r.get(key) is not None]
        return round(statistics.median(xs), 1) if xs else None

    return {"config": config, "questions": len(rows), "first_request_s": round(warm_s, 1),
            "ttft_p50_s": pct(ttft, 50), "ttft_p95_s": pct(ttft, 95),
            "ttft_cpu_p50_s": pct(cpu, 50), "ttft_cpu_p95_s": pct(cpu, 95),
            "prompt_tokens_p50": median("prompt_tokens"), "prefill_tokens_p50": median("prefill_tokens"),
            "prompt_tokens_per_s_p50": median("prompt_tokens_per_s"),
            "gen_tokens_per_s_p50": median("gen_tokens_per_s"),
            "load_1m_p50": median("load_1m"), "under_2s_p50": bool(ttft) and pct(ttft, 50) <= 2.0,
            "rows": rows}


def build_index(index: str, dataset: Path | None) -> tuple[list[str], Any]:
    """Ingest the FAQ eval set (``dataset``, else python-faq --small built now) into ``index``."""
    from esrag.settings import load_settings
    from query.eval import beir, runner
    from query.eval.cli import build_dataset

    if dataset is None:
        dataset = Path(tempfile.mkdtemp(prefix="esrag-ttft-"))
        build_dataset("python-faq", dataset, small=True)
    data = beir.load_dataset(dataset)
    settings = load_settings(index=index)
    runner.ingest_corpus(settings, data)
    return [data.queries[q] for q in sorted(data.queries)], settings


def main(configs: list[str], questions: int, dataset: Path | None, max_tokens: int, timeout: float) -> None:
    """Measure every configuration on one index and append the run to bench/results/ttft.json."""
    from esrag.es import make_client

    parsed = [parse_config(c) for c in configs]
    index = f"bench-ttft-{uuid.uuid4().hex[:8]}"
    all_questions, settings = build_index(index, dataset)
    asked = all_questions[:questions]
    run: dict[str, Any] = {"machine": machine_info(), "what": "warm `esrag serve`, POST /v1/ask stream, "
                           "k=5 passages, FAQ questions; ttft_s is wall time to the first token event "
                           "(retrieval included); ttft_cpu_s the server's CPU seconds to it",
                           "max_tokens": max_tokens, "results": []}
    old = json.loads(OUT.read_text()) if OUT.exists() else {"runs": []}
    old["runs"].append(run)
    OUT.parent.mkdir(exist_ok=True)
    try:
        for config in parsed:
            result = run_config(config, index, asked, max_tokens, timeout)
            run["results"].append(result)
            run["machine"]["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
            OUT.write_text(json.dumps(old, indent=2) + "\n")  # after each one: a long run keeps its part
            print(json.dumps({k: v for k, v in result.items() if k != "rows"}), flush=True)
    finally:
        es = make_client(settings)
        concrete = list(es.indices.get_alias(name=index, ignore_unavailable=True) or {})
        if concrete:
            es.indices.delete(index=",".join(concrete))
    print(f"wrote {OUT}")

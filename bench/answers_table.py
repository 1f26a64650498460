"""Markdown rows of one run of bench/results/answers.json, the table docs/QUALITY.md shows.

    python -m bench.answers_table            # the last run
    python -m bench.answers_table 10         # run 10 (0-based, in file order)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

NAMES = {"local:qwen2.5-coder-0.5b-instruct": "Qwen2.5-Coder-0.5B-Instruct",
         "local:qwen2.5-coder-1.5b-instruct": "Qwen2.5-Coder-1.5B-Instruct",
         "local:smollm2-135m-instruct": "SmolLM2-135M-Instruct"}
HEADER = ("| backend | check | attribution | answers | token F1 | ROUGE-L | answer similarity | cited share "
          "| citation precision | faithfulness | declined | unsupported dropped | attributed "
          "| check agrees with qrels | p50 prompt tokens | p50 first token ms | p50 total ms |")


def cell(v: Any, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "on" if v else "off"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float) and digits == 0:
        return f"{round(v):,}"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def backend_name(spec: str) -> str:
    model, _, mode = spec.partition("+")
    return NAMES.get(model, model) + (f" + {mode}" if mode else "")


def rows(run: dict[str, Any]) -> list[str]:
    """One markdown row per (backend, check, attribution) result of ``run``."""
    out = [HEADER, "| --- | --- | --- |" + " ---: |" * 14]
    for r in run["results"]:
        attribution = "-" if r["check"] == "off" else cell(bool(r["attribution"]))
        out.append("| " + " | ".join([
            backend_name(r["backend"]), r["check"], attribution, cell(r["answers"]),
            *(cell(r[k]) for k in ("token_f1", "rouge_l", "answer_similarity", "cited_share",
                                   "citation_precision", "faithfulness", "declined_share")),
            cell(r["unsupported_citations"]), cell(r["attributed_citations"]),
            cell(r["check_agrees_with_qrels"]), cell(r["p50_prompt_tokens"]),
            cell(r["p50_first_token_ms"], 0), cell(r["p50_total_ms"], 0)]) + " |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", nargs="?", type=int, default=-1, help="run number, 0-based (default: the last)")
    ap.add_argument("--file", type=Path, default=Path("bench/results/answers.json"))
    args = ap.parse_args()
    run = json.loads(args.file.read_text())["runs"][args.run]
    print(f"<!-- {run['dataset']}, {run['sample']} of {run['of']}, {run['machine']['date']} -->")
    print("\n".join(rows(run)))


if __name__ == "__main__":
    main()

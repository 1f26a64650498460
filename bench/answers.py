"""Answer quality per backend, side by side on one seeded sample, with and without the citation check.

Each answer is generated once with the check off; the overlap and embedding checks, each with
and without post-hoc attribution of uncited sentences, are then applied to that same answer
against the prompt's passages, so the rows differ only by the check.
Per citation it also records whether each check's verdict agrees with the judged relevant
documents. The eval index must exist (run `esrag eval DIR --index ALIAS` first).

    python -m bench.answers --dataset data/python-faq --index eval-python-faq --sample 8 \
        --backends extractive,local:smollm2-135m-instruct,local:qwen2.5-coder-0.5b-instruct

A backend ``local:MODEL+reasoning`` asks the model to reason first (ESRAG_LLM_REASONING).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench.machine import machine_info
from esrag.settings import load_settings
from query.attribution import attribute_citations
from query.citations import NOT_FOUND
from query.eval.answers import best_f1, rouge_l
from query.eval.ask import reference_similarity, sample_answers
from query.eval.beir import load_dataset
from query.verify import (
    check_citations,
    cited_numbers,
    claim_text,
    embedding_support,
    overlap_support,
    sentence_spans,
)

# (check, post-hoc attribution); attribution acts only with a check, as in `esrag ask`
CHECKS = (("off", False), ("overlap", False), ("overlap", True), ("embedding", False), ("embedding", True))


def mean(xs: list[float]) -> float | None:
    return round(statistics.fmean(xs), 4) if xs else None


def score(answers: list[dict], refs: dict, qrels: dict, similarity: Any) -> dict[str, Any]:
    """The eval measures over (qid, answer dict) pairs."""
    f1, rl, sim, faith, correct, total, cited, declined = [], [], [], [], 0, 0, 0, 0
    for a in answers:
        text, qid = a["answer"], a["qid"]
        f1.append(best_f1(text, refs[qid]))
        rl.append(rouge_l(text, refs[qid]))
        sim.append(similarity(text, refs[qid]))
        if a.get("faithfulness") is not None:
            faith.append(a["faithfulness"])
        declined += text == NOT_FOUND
        cited += bool(a["citations"])
        relevant = {d for d, g in qrels.get(qid, {}).items() if g > 0}
        for c in a["citations"]:
            total += 1
            correct += c["doc_id"] in relevant
    n = len(answers)
    return {"answers": n, "token_f1": mean(f1), "rouge_l": mean(rl), "answer_similarity": mean(sim),
            "cited_share": round(cited / n, 4),
            "citation_precision": round(correct / total, 4) if total else 0.0,
            "faithfulness": mean(faith), "declined_share": round(declined / n, 4)}


def apply_check(raw: dict, check: str, support: Any, min_support: float, *, attribute: bool = False) -> dict:
    """``raw`` (generated with the check off) after ``check``, with or without post-hoc attribution,
    against the prompt's passages (``raw["passages"]``), as `esrag ask` applies them."""
    out = copy.deepcopy(raw)
    if check == "off" or raw["answer"] == NOT_FOUND:
        return out
    passages = raw["passages"]
    texts = [p["text"] for p in passages]
    text = raw["answer"]
    if attribute:
        attributed = attribute_citations(text, texts, support, min_support)
        text, out["attributed_citations"] = attributed.answer, attributed.added
    checked = check_citations(text, texts, support, min_support)
    out["faithfulness"] = checked.faithfulness
    out["unsupported_citations"] = checked.unsupported
    if checked.supported == 0:  # an uncited answer has no supported claim either
        out["answer"], out["citations"] = NOT_FOUND, []
    else:
        out["answer"] = checked.answer.strip()
        out["citations"] = [passages[n - 1] for n in checked.kept]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", type=Path, required=True)
    ap.add_argument("--index", required=True)
    ap.add_argument("--backends", default="extractive,local:smollm2-135m-instruct")
    ap.add_argument("--sample", type=int, default=8)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--max-tokens", type=int, default=192)
    ap.add_argument("--budget-s", type=float, default=None,
                    help="stop a backend after this many seconds; the rest answer the same questions")
    ap.add_argument("--out", type=Path, default=Path("bench/results/answers.json"))
    args = ap.parse_args()

    from esrag.embedder import get_embedder
    from query.generation import ask

    dataset = load_dataset(args.dataset)
    refs = dict(sample_answers(dataset.answers, args.sample, args.seed))
    base = load_settings(index=args.index, citation_check="off", llm_max_tokens=args.max_tokens)
    embedder = get_embedder(base)
    similarity = reference_similarity(base)
    supports = {"overlap": overlap_support, "embedding": embedding_support(embedder)}
    run: dict[str, Any] = {"machine": machine_info(), "dataset": args.dataset.name, "sample": len(refs),
                           "of": len(dataset.answers), "seed": args.seed, "max_tokens": args.max_tokens,
                           "context_tokens": base.ask_context_tokens, "results": []}
    generated: dict[str, tuple[list[dict], float]] = {}
    qids = list(refs)
    for spec in args.backends.split(","):
        name, _, mode = spec.partition("+")  # "local:MODEL+reasoning": the reasoning prompt
        backend, _, model = name.partition(":")
        settings = base.model_copy(update={"llm_backend": backend, "llm_local_model": model or None,
                                           "llm_reasoning": mode == "reasoning"})
        raws = []
        t0 = time.perf_counter()
        for qid in qids:
            answer = ask(settings, dataset.queries[qid], embedder=embedder)
            a = answer.to_dict(include_reasoning=True)
            a["qid"] = qid
            a["passages"] = [{"n": n, "doc_id": h.doc_id, "text": h.text}
                             for n, h in enumerate(answer.passages, start=1)]
            raws.append(a)
            t = a["timings_ms"]
            print(f"{spec} {len(raws)}/{len(qids)} {qid}: {t['total_ms'] / 1000:.1f} s {a['answer'][:80]!r}",
                  file=sys.stderr, flush=True)
            if args.budget_s and time.perf_counter() - t0 > args.budget_s:
                break  # later backends answer only the questions this one reached
        generated[spec] = (raws, round(time.perf_counter() - t0, 1))
        qids = [a["qid"] for a in raws]
    run["sample"] = len(qids)
    run["load_avg_after"] = [round(x, 2) for x in os.getloadavg()]
    for spec, (raws, wall) in generated.items():
        raws = [a for a in raws if a["qid"] in qids]  # the questions every backend answered
        ttft = [a["timings_ms"]["first_token_ms"] for a in raws if "first_token_ms" in a["timings_ms"]]
        prompt = [a["timings_ms"]["prompt_tokens"] for a in raws if "prompt_tokens" in a["timings_ms"]]
        total = [a["timings_ms"]["total_ms"] for a in raws]
        agreement = {}
        for check in ("overlap", "embedding"):
            agree = n = 0
            for a in raws:
                relevant = {d for d, g in dataset.qrels.get(a["qid"], {}).items() if g > 0}

                for s, e in sentence_spans(a["answer"]):
                    sentence = a["answer"][s:e]
                    for num in cited_numbers(sentence):
                        c = next((c for c in a["citations"] if c["n"] == num), None)
                        if c is None:
                            continue
                        ok = supports[check](claim_text(sentence), c["text"]) >= base.citation_min_support
                        agree += ok == (c["doc_id"] in relevant)
                        n += 1
            agreement[check] = round(agree / n, 4) if n else None
        for check, attribute in CHECKS:
            answers = [apply_check(a, check, supports.get(check), base.citation_min_support,
                                   attribute=attribute) for a in raws]
            run["results"].append({
                "backend": spec, "check": check, "attribution": attribute,
                **score(answers, refs, dataset.qrels, similarity),
                "unsupported_citations": sum(a.get("unsupported_citations") or 0 for a in answers),
                "attributed_citations": sum(a.get("attributed_citations") or 0 for a in answers),
                "check_agrees_with_qrels": agreement.get(check),
                "p50_prompt_tokens": statistics.median(prompt) if prompt else None,
                "p50_first_token_ms": round(statistics.median(ttft), 1) if ttft else None,
                "p50_total_ms": round(statistics.median(total), 1),
                "generate_wall_s": wall,
            })
            if (check, attribute) == ("overlap", True):  # the defaults: keep each answer's text
                run.setdefault("answers", {})[spec] = [
                    {"qid": r["qid"], "question": dataset.queries[r["qid"]], "written": r["answer"],
                     "checked": a["answer"], "cited": [c["n"] for c in a["citations"]],
                     "reasoning": r.get("reasoning"), "pieces": r["timings_ms"].get("pieces")}
                    for r, a in zip(raws, answers, strict=True)]
        print(json.dumps(run["results"][-len(CHECKS):]), flush=True)
    old = json.loads(args.out.read_text()) if args.out.exists() else {"runs": []}
    old["runs"].append(run)
    args.out.write_text(json.dumps(old, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""`esrag eval DATASET_DIR` and `esrag eval-build python-faq|chatterbot OUT_DIR`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from esrag.cligroup import QuickHelpGroup
from esrag.clisettings import load_settings
from esrag.errors import ConfigError

BUILDERS = ("python-faq", "chatterbot")


def _progress(message: str) -> None:
    typer.echo(message, err=True)


def build_dataset(name: str, out: Path, *, small: bool = False, seed: int = 13,
                  source: Path | None = None) -> dict[str, int]:
    """Build one of the bundled eval sets into ``out`` (BEIR layout); returns the counts."""
    from query.eval import beir

    if name == "python-faq":
        from query.eval import pyfaq

        corpus, queries, qrels = pyfaq.build(source or pyfaq.DEFAULT_DOCS, small=small, seed=seed)
    elif name == "chatterbot":
        from query.eval import chatterbot

        corpus, queries, qrels = chatterbot.build(source, small=small, seed=seed)
    else:
        raise ConfigError(f"unknown eval set {name!r}; use one of {', '.join(BUILDERS)}")
    return beir.write_dataset(out, corpus, queries, qrels)


def eval_command(
    dataset_dir: Annotated[Path, typer.Argument(help="BEIR folder: corpus.jsonl, queries.jsonl, qrels/")],
    mode: Annotated[str, typer.Option(help="bm25|dense|hybrid|hybrid+rerank|all")] = "hybrid",
    as_json: Annotated[bool, typer.Option("--json", help="print the results as JSON")] = False,
    report: Annotated[Path | None, typer.Option(help="write an HTML report with bar charts here")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="evaluate only the first N judged queries")] = None,
    index: Annotated[str | None, typer.Option(
        help="index alias to ingest into and search (default eval-<dataset>)")] = None,
    sweep: Annotated[str | None, typer.Option(help="KEY=V1,V2 e.g. fusion=rrf,weighted")] = None,
    answers: Annotated[bool, typer.Option("--answers", help="also score generated answers")] = False,
    answers_sample: Annotated[int | None, typer.Option(
        min=1, help="score the answers of a seeded random sample of N queries")] = None,
    seed: Annotated[int, typer.Option(help="seed of --answers-sample")] = 13,
) -> None:
    """Ingest an eval set into its own index and report nDCG@10, Recall@100, MRR@10 per mode."""
    from query.eval import beir, runner
    from query.eval import report as rep

    settings = load_settings(index=index)
    modes = runner.parse_modes(mode)
    key_values = runner.parse_sweep(sweep) if sweep else None
    dataset = beir.load_dataset(dataset_dir, limit=limit)
    if answers and not dataset.answers:
        raise ConfigError(f"{dataset_dir}/queries.jsonl has no reference answers (metadata.answers)")
    from esrag.embedder import get_embedder

    embedder = get_embedder(settings)
    from esrag.terminal import progress_wanted

    progress = _progress if progress_wanted() or not as_json else None
    out: dict[str, Any]
    if key_values:
        out = runner.sweep(settings, dataset, key_values[0], key_values[1], modes, index=index,
                           embedder=embedder, progress=progress)
    else:
        out = runner.evaluate_dataset(settings, dataset, modes, index=index, embedder=embedder,
                                      progress=progress)
    if answers:
        from query.eval.answers import answer_quality
        from query.eval.ask import answer_fn, reference_similarity, sample_answers

        ask_settings = runner.with_settings(settings, index=runner.eval_index(dataset, index))
        refs = sample_answers(dataset.answers, answers_sample, seed)
        out["answers"] = answer_quality(dataset.queries, refs, dataset.qrels,
                                        answer_fn(ask_settings, embedder=embedder),
                                        reference_similarity(settings), extended=True, progress=progress)
        out["answers"]["backend"] = settings.llm_backend
        if answers_sample:
            out["answers"]["sample_seed"] = seed
    if report:
        rep.write_report(report, out)
    if as_json:
        typer.echo(json.dumps(out))
        return
    typer.echo(f"dataset {out['dataset']}: {out['queries']} queries")
    typer.echo(rep.sweep_table(out) if "sweep" in out else rep.results_table(out["results"]))
    if "answers" in out:
        typer.echo("answers: " + ", ".join(f"{k}={v}" for k, v in out["answers"].items()))
    if report:
        typer.echo(f"report: {report}")


def build_command(
    name: Annotated[str, typer.Argument(help="python-faq or chatterbot")],
    out_dir: Annotated[Path, typer.Argument(help="folder to write corpus.jsonl, queries.jsonl, qrels/")],
    small: Annotated[bool, typer.Option("--small", help="a small seeded slice for CI")] = False,
    seed: Annotated[int, typer.Option(help="seed of the small slice's sample")] = 13,
    source: Annotated[Path | None, typer.Option(help="source folder (Python HTML docs / YAML files)")] = None,
) -> None:
    """Build a BEIR-layout eval set from installed packages (deterministic)."""
    counts = build_dataset(name, out_dir, small=small, seed=seed, source=source)
    typer.echo(f"{name}: {counts['documents']} documents, {counts['queries']} queries, "
               f"{counts['qrels']} judgements in {out_dir}")


def tune_command(
    index: Annotated[str, typer.Argument(help="index alias whose judgments to tune on")],
    apply: Annotated[bool, typer.Option("--apply", help="store the best fusion and weight")] = False,
    fusions: Annotated[str | None, typer.Option(help="fusions to try (default dbsf,rrf,weighted)")] = None,
    weights: Annotated[str | None, typer.Option(
        help="dense weights to try (default 0.2,0.4,0.5,0.6,0.8,0.9)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the results as JSON")] = False,
) -> None:
    """Sweep hybrid fusion and dense weight on the index's judgments; --apply stores the best for it."""
    from esrag.terminal import progress_wanted
    from query.eval.tune import parse_grid, tune

    settings = load_settings(index=index)
    fs, ws = parse_grid(fusions, weights)
    progress = _progress if progress_wanted() or not as_json else None
    out = tune(settings, fusions=fs, weights=ws, apply=apply, progress=progress)
    if as_json:
        typer.echo(json.dumps(out))
        return
    typer.echo(f"index {out['index']}: {out['queries']} judged queries ({out['judgments']} judgments)")
    typer.echo(f"{'fusion':<10} {'weight':>6} {'nDCG@10':>8} {'MRR@10':>8} {'R@100':>8}")
    for r in out["results"]:
        typer.echo(f"{r['fusion']:<10} {r['weight_dense']:>6} {r['ndcg@10']:>8.4f} {r['mrr@10']:>8.4f} "
                   f"{r['recall@100']:>8.4f}")
    best = out["best"]
    verb = "stored in the index" if apply else "not stored: run again with --apply"
    typer.echo(f"best: fusion={best['fusion']} weight={best['hybrid_weight_dense']} "
               f"(nDCG@10 {best['ndcg_at_10']:.4f}); {verb}")


judgments_app = typer.Typer(help="Relevance judgments marked in the search workbench.", no_args_is_help=True,
                             cls=QuickHelpGroup)


@judgments_app.command("export")
def judgments_export(
    index: Annotated[str, typer.Argument(help="index alias whose judgments to export")],
    out_dir: Annotated[Path, typer.Argument(help="folder to write corpus.jsonl, queries.jsonl, qrels/")],
) -> None:
    """Write the judgments as a BEIR folder (judged documents, queries, qrels/test.tsv)."""
    from query.judgments import export_beir
    from query.retrieval import default_client

    settings = load_settings(index=index)
    counts = export_beir(default_client(settings), settings, out_dir)
    typer.echo(f"{counts['documents']} documents, {counts['queries']} queries, {counts['qrels']} qrels "
               f"({counts['judgments']} judgments) in {out_dir}")


@judgments_app.command("list")
def judgments_list(
    index: Annotated[str, typer.Argument(help="index alias")],
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Every judgment of the index: query, chunk, document, relevance."""
    from query.judgments import list_judgments
    from query.retrieval import default_client

    settings = load_settings(index=index)
    rows = list_judgments(default_client(settings), settings.index)
    if as_json:
        typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    for r in rows:
        typer.echo(f"{r['relevance']}  {r['chunk_id']}  {r['query']}")


def register(app: typer.Typer) -> None:
    """Add `eval`, `eval-build`, `tune` and `judgments` to ``app``."""
    app.command("eval")(eval_command)
    app.command("eval-build")(build_command)
    app.command("tune")(tune_command)
    app.add_typer(judgments_app, name="judgments")

"""`esrag search`, `esrag ask` and `esrag serve`."""

from __future__ import annotations

import json
import os
from typing import Annotated

import typer

from esrag.clisettings import load_settings

ModeOpt = Annotated[str, typer.Option("--mode", help="bm25, dense or hybrid")]
FilterOpt = Annotated[list[str] | None, typer.Option("--filter", help="key=value (doc_id, source, "
                                                     "content_type, meta.<key>); repeatable")]
RerankOpt = Annotated[bool | None, typer.Option("--rerank/--no-rerank", help="second-stage rerank")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON")]
IndexOpt = Annotated[str | None, typer.Option("--index", help="index alias (default ESRAG_INDEX)")]


def _quiet_models() -> None:
    """No model-loading progress bars or warnings on the terminal (without importing transformers)."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")


def search_cmd(
    query: Annotated[str, typer.Argument(help="what to search for")],
    mode: ModeOpt = "hybrid",
    rerank: RerankOpt = None,
    k: Annotated[int, typer.Option("-k", help="number of chunks")] = 10,
    filters: FilterOpt = None,
    as_json: JsonOpt = False,
    index: IndexOpt = None,
) -> None:
    """Ranked chunks with scores and source ids."""
    from query.filters import parse_filters
    from query.retrieval import retrieve

    _quiet_models()
    settings = load_settings(index=index)
    found = retrieve(settings, query, mode=mode, k=k, filters=parse_filters(filters or []) or None,
                     rerank=rerank)
    if as_json:
        typer.echo(json.dumps({"hits": [h.to_dict() for h in found.hits], "mode": mode,
                               "timings_ms": found.timings_ms}, indent=2))
        return
    if not found.hits:
        typer.echo("no results")
    for rank, hit in enumerate(found.hits, start=1):
        snippet = " ".join(hit.text.split())[:160]
        typer.echo(f"{rank:>3}. {hit.score:.4f}  {hit.doc_id}  {hit.chunk_id}  {hit.source}")
        typer.echo(f"     {snippet}")


def ask_cmd(
    question: Annotated[str, typer.Argument(help="the question")],
    as_json: JsonOpt = False,
    stream: Annotated[bool, typer.Option("--stream", help="print the answer as it is generated")] = False,
    mode: ModeOpt = "hybrid",
    rerank: RerankOpt = None,
    k: Annotated[int | None, typer.Option("-k", help="passages given to the generator")] = None,
    filters: FilterOpt = None,
    backend: Annotated[str | None, typer.Option(help="extractive, openai or local")] = None,
    reasoning: Annotated[bool | None, typer.Option("--reasoning/--no-reasoning",
                                                   help="let the model reason step by step")] = None,
    show_reasoning: Annotated[bool, typer.Option(help="also print the reasoning")] = False,
    index: IndexOpt = None,
) -> None:
    """An answer with numbered citations [n] that map to chunks.

    With --json --stream, one JSON object per line: {"token": ...} then the final answer.
    """
    from query.filters import parse_filters
    from query.generation import ask_stream

    _quiet_models()
    settings = load_settings(llm_backend=backend, index=index)
    events = ask_stream(settings, question, mode=mode, k=k, filters=parse_filters(filters or []) or None,
                        rerank=rerank, reasoning=reasoning)
    for event in events:
        if event.kind == "token" and stream:
            if as_json:
                typer.echo(json.dumps({"token": event.text}))
            else:
                typer.echo(event.text, nl=False)
        elif event.kind == "done" and event.answer is not None:
            answer = event.answer
            if as_json:
                typer.echo(json.dumps(answer.to_dict(include_reasoning=show_reasoning),
                                      indent=None if stream else 2))
                return
            if stream:
                typer.echo("")
            else:
                typer.echo(answer.answer)
            if show_reasoning and answer.reasoning:
                typer.echo(f"\nreasoning: {answer.reasoning}")
            if answer.citations:
                typer.echo("")
            for c in answer.citations:
                typer.echo(f"[{c.n}] {c.source} ({c.doc_id} {c.chunk_id}, chars {c.start}-{c.end})")
            if answer.removed_citations:
                typer.echo(f"({answer.removed_citations} citation(s) to no passage removed)")


def serve_cmd(
    host: Annotated[str | None, typer.Option(help="address to bind (default ESRAG_API_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default ESRAG_API_PORT)")] = None,
    index: Annotated[str | None, typer.Option(
        "--index", help="index alias requests use unless they name one (default ESRAG_INDEX)")] = None,
) -> None:
    """Serve the query API (OpenAPI at /docs). Without API keys (ESRAG_API_KEYS or `esrag keys`)
    it binds to loopback only."""
    import uvicorn

    from query.api import create_app
    from query.api.security import check_bind

    _quiet_models()
    settings = load_settings(api_host=host, api_port=port, index=index)
    check_bind(settings, settings.api_host)
    uvicorn.run(create_app(settings), host=settings.api_host, port=settings.api_port, log_level="info")


def register(app: typer.Typer) -> None:
    """Add search, ask and serve to ``app``."""
    app.command("search")(search_cmd)
    app.command("ask")(ask_cmd)
    app.command("serve")(serve_cmd)

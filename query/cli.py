"""`esrag search`, `esrag ask` and `esrag chat` (`esrag serve` is server/cli.py)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from esrag.clisettings import load_settings

if TYPE_CHECKING:
    from esrag.settings import Settings

ModeOpt = Annotated[str, typer.Option("--mode", help="bm25, dense or hybrid")]
FilterOpt = Annotated[list[str] | None, typer.Option("--filter", help="key=value (doc_id, source, "
                                                     "content_type, meta.<key>); repeatable")]
RerankOpt = Annotated[bool | None, typer.Option("--rerank/--no-rerank", help="second-stage rerank")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON")]
IndexOpt = Annotated[str | None, typer.Option("--index", help="index alias (default ESRAG_INDEX)")]


def _quiet_models() -> None:
    """No model-loading progress bars or warnings on the terminal (without importing transformers)."""
    from esrag.libenv import library_switches

    library_switches(quiet=True)


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
        out = {"hits": [h.to_dict() for h in found.hits], "mode": mode, "timings_ms": found.timings_ms}
        if found.rerank_source is not None:
            out["rerank_source"] = found.rerank_source
        typer.echo(json.dumps(out, indent=2))
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
    _load_backend(settings)
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
            if answer.attributed_citations:
                typer.echo(f"({answer.attributed_citations} citation(s) added to sentences the model "
                           "left uncited)")


def _load_backend(settings: Settings) -> None:
    """Load the local model once, saying so on stderr (it takes seconds; later calls reuse it)."""
    from query.generation import get_backend
    from query.local_models import local_model_path

    if settings.llm_backend != "local":
        return
    typer.echo(f"loading the local model {local_model_path(settings).name} ...", err=True)
    get_backend(settings)


def chat_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="one JSON answer per line (for scripts)")] = False,
    mode: ModeOpt = "hybrid",
    rerank: RerankOpt = None,
    k: Annotated[int | None, typer.Option("-k", help="at most this many passages")] = None,
    filters: FilterOpt = None,
    backend: Annotated[str | None, typer.Option(help="extractive, openai or local")] = None,
    index: IndexOpt = None,
) -> None:
    """A conversation: each line read is a question; follow-ups are rewritten using the history.

    Type /reset to start over and /exit (or end the input) to leave.
    """
    import sys

    from query.chat import chat_stream
    from query.filters import parse_filters

    _quiet_models()
    settings = load_settings(llm_backend=backend, index=index)
    _load_backend(settings)
    parsed = parse_filters(filters or []) or None
    interactive = sys.stdin.isatty() and not as_json
    history: list[dict[str, str]] = []
    if interactive:
        typer.echo("Ask a question (/reset starts over, /exit leaves).")
    while True:
        if interactive:
            typer.echo("you> ", nl=False)
        line = sys.stdin.readline()
        if not line or line.strip() == "/exit":
            return
        question = line.strip()
        if not question:
            continue
        if question == "/reset":
            history = []
            continue
        history.append({"role": "user", "content": question})
        history = history[-settings.chat_max_messages:]
        answer, streamed = None, ""
        for event in chat_stream(settings, history, mode=mode, k=k, filters=parsed, rerank=rerank):
            if event.kind == "token" and interactive:
                streamed += event.text
                typer.echo(event.text, nl=False)
            elif event.kind == "done":
                answer = event.answer
        assert answer is not None
        history.append({"role": "assistant", "content": answer.answer})
        if as_json:
            typer.echo(json.dumps(answer.to_dict()))
            continue
        if interactive:
            typer.echo("")
            if answer.answer != streamed.strip():  # the citation check changed it
                typer.echo(f"checked: {answer.answer}")
            if answer.rewrite != "none":
                typer.echo(f"(searched for: {answer.query})")
        else:
            typer.echo(answer.answer)
        for c in answer.citations:
            typer.echo(f"[{c.n}] {c.source} ({c.doc_id} {c.chunk_id}, chars {c.start}-{c.end})")


def register(app: typer.Typer) -> None:
    """Add search, ask and chat to ``app``."""
    app.command("search")(search_cmd)
    app.command("ask")(ask_cmd)
    app.command("chat")(chat_cmd)

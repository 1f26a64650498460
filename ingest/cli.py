"""`esrag ingest` and `esrag delete` (in-process; the workers reuse ``run_ingest``)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from esrag.clisettings import load_settings

if TYPE_CHECKING:  # imported where used: `esrag --help` must not load elasticsearch or pydantic
    from esrag.settings import Settings
    from ingest.pipeline import IngestSummary, ProgressEvent


@contextmanager
def progress_bar(enabled: bool) -> Iterator[Callable[[ProgressEvent], None] | None]:
    """A rich progress bar (files, chunks, chunks/s, ETA) on stderr, or None when disabled."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(
        TextColumn("files"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[chunks]} chunks, {task.fields[rate]:.1f} chunks/s"),
        TextColumn("eta"), TimeRemainingColumn(),
        console=Console(stderr=True), transient=False,
    )
    with bar:
        task = bar.add_task("ingest", total=None, chunks=0, rate=0.0)

        def update(ev: ProgressEvent) -> None:
            rate = ev.indexed / ev.elapsed if ev.elapsed > 0 else 0.0
            bar.update(task, total=ev.files_total, completed=ev.files_done, chunks=ev.indexed, rate=rate)

        yield update


def run_ingest(paths: list[str], settings: Settings, *, show_progress: bool = False,
               sync: bool = False) -> IngestSummary:
    """Expand ``paths`` and ingest them in this process; with ``sync``, then delete the documents
    whose file under a folder among ``paths`` no longer exists (counted in ``deleted``)."""
    from ingest.pipeline import ingest_files
    from ingest.sources import expand_paths

    files = expand_paths(paths, settings)
    with progress_bar(show_progress) as progress:
        summary = ingest_files(files, settings, progress=progress)
    if sync:
        from ingest.sync import sync_index

        result = sync_index(settings, paths)
        summary.deleted += result.deleted
        summary.deleted_sources = result.sources
    return summary


def print_summary(summary: IngestSummary) -> None:
    """The human-readable summary: one line, then one line per failure."""
    typer.echo(
        f"{summary.indexed} chunks indexed from {summary.documents} documents into {summary.index} "
        f"({summary.skipped_unchanged} unchanged, {summary.deleted} stale chunks deleted, "
        f"{len(summary.failed)} failed) in {summary.seconds:.1f}s"
    )
    for source in summary.deleted_sources or []:
        typer.echo(f"deleted: {source} (no longer on disk)")
    for f in summary.failed:
        typer.echo(f"failed: {f['source']}: {f['error']}")


def reindex(
    model: Annotated[str, typer.Option("--model", help="the new embedding model's name")],
    model_path: Annotated[Path | None, typer.Option(
        "--model-path", help="local sentence-transformers folder (default: a packaged model)")] = None,
    index: Annotated[str | None, typer.Option(help="index alias (default ESRAG_INDEX)")] = None,
    delete_old: Annotated[bool, typer.Option("--delete-old", help="delete the old index after")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
) -> None:
    """Re-embed every chunk with another model into a new index, then swap the alias (no downtime)."""
    from ingest.reindex import reindex_command  # elasticsearch and the embedder load only here

    reindex_command(model=model, model_path=model_path, index=index, delete_old=delete_old, as_json=as_json)


def register(app: typer.Typer) -> None:
    """Add `delete` and `reindex` to ``app`` (`esrag ingest` is workers/cli.py's: it runs
    jobs on workers when one is online and ``run_ingest`` in-process otherwise)."""
    app.command("reindex")(reindex)

    @app.command()
    def delete(
        doc_id: Annotated[list[str] | None, typer.Option("--doc-id", help="document id (repeatable)")] = None,
        source: Annotated[list[str] | None, typer.Option("--source", help="source path (repeatable)")] = None,
        index: Annotated[str | None, typer.Option(help="index alias (default ESRAG_INDEX)")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
    ) -> None:
        """Delete documents (all their chunks) by id or by source."""
        from ingest.pipeline import delete_documents

        settings = load_settings(index=index)
        deleted = delete_documents(settings, doc_ids=doc_id or [], sources=source or [])
        if as_json:
            typer.echo(json.dumps({"deleted": deleted, "index": settings.index}))
        else:
            typer.echo(f"{deleted} chunks deleted from {settings.index}")

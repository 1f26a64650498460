"""`esrag worker`, `esrag jobs`, `esrag job` and the job-aware `esrag ingest`."""

from __future__ import annotations

import json
import time
import uuid
from typing import TYPE_CHECKING, Annotated

import typer

from esrag.clisettings import load_settings
from esrag.errors import EsragError, ServiceUnavailable

if TYPE_CHECKING:  # imported where used: `esrag --help` and friends must not load redis or pydantic
    from esrag.settings import Settings
    from workers.jobstore import Job, JobStore


def worker(
    concurrency: Annotated[
        int | None, typer.Option(help="worker processes (default ESRAG_WORKER_CONCURRENCY)")
    ] = None,
    queues: Annotated[str | None, typer.Option(help="comma-separated queues (default ESRAG_QUEUE)")] = None,
    prefetch: Annotated[int, typer.Option(help="tasks prefetched per process")] = 1,
    loglevel: Annotated[str, typer.Option(help="log level")] = "INFO",
    name: Annotated[str | None, typer.Option(help="worker name (default unique per process)")] = None,
) -> None:
    """Run a Celery ingest worker in the foreground."""
    from workers.app import make_celery
    from workers.leases import install_reaper
    from workers.presence import install_presence

    settings = load_settings(worker_concurrency=concurrency)
    app = make_celery(settings)
    install_reaper(settings, (queues or settings.queue).split(","))
    install_presence(settings, (queues or settings.queue).split(","))
    node = name or f"esrag-{uuid.uuid4().hex[:6]}@%h"
    app.worker_main([
        "worker", f"--concurrency={settings.worker_concurrency}", "-Q", queues or settings.queue,
        f"--prefetch-multiplier={prefetch}", f"--loglevel={loglevel}", "-n", node,
        "--without-gossip", "--without-mingle",
    ])


def jobs(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    limit: Annotated[int, typer.Option(min=1, help="newest N jobs")] = 20,
    index: Annotated[str | None, typer.Option(help="only jobs into this index alias (default: all)")] = None,
) -> None:
    """List ingest jobs, newest first."""
    from workers.jobstore import JobStore

    if index is not None:
        load_settings(index=index)  # the same name check as everywhere else
    store = JobStore.connect(load_settings())
    listed = [j.to_dict() for j in store.list(limit if index is None else max(limit, 1000))]
    if index is not None:
        listed = [j for j in listed if j["index"] == index][:limit]
    if as_json:
        typer.echo(json.dumps(listed, indent=2))
        return
    for j in listed:
        stalled = f" stalled={j['tasks_stalled']}" if j["tasks_stalled"] else ""
        typer.echo(f"{j['id']}  {j['status']:<24} {j['progress'] * 100:5.1f}%  "
                   f"chunks={j['chunks']} failed={len(j['failed'])}{stalled}  index={j['index']}")


def job(
    job_id: Annotated[str, typer.Argument(help="job id")],
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help="re-run failed items")] = False,
    cancel: Annotated[bool, typer.Option("--cancel", help="cancel the job")] = False,
    requeue: Annotated[
        bool, typer.Option("--requeue", help="re-enqueue unfinished tasks (lost queue)")
    ] = False,
) -> None:
    """Show one job; retry its failures, cancel it, or rebuild its queue."""
    from workers.jobstore import JobStore

    settings = load_settings()
    store = JobStore.connect(settings)
    if store.get(job_id) is None:
        raise EsragError(f"no job {job_id}")
    if retry_failed:
        from workers import submit  # celery loads only for the actions that enqueue

        typer.echo(f"requeued {submit.retry_failed(job_id, settings)} task(s)", err=as_json)
    if cancel:
        typer.echo("canceled" if store.cancel(job_id) else "job already finished", err=as_json)
    if requeue:
        from workers import submit

        typer.echo(f"requeued {submit.requeue_unfinished(job_id, settings)} task(s)", err=as_json)
    snapshot = store.get(job_id)
    assert snapshot is not None
    if as_json:
        typer.echo(json.dumps(snapshot.to_dict(), indent=2))
    else:
        _print_job(snapshot)


def _print_job(j: Job) -> None:
    d = j.to_dict()
    typer.echo(f"job {d['id']}: {d['status']} ({d['progress'] * 100:.1f}%) index={d['index']}")
    if d["error"]:
        typer.echo(f"  error: {d['error']}")
    if d["status"] == "expanding":
        typer.echo("  a worker is expanding the job's folders into tasks")
    typer.echo(f"  tasks {d['tasks_done']} done, {d['tasks_failed']} failed of {d['tasks_total']}; "
               f"documents={d['documents']} chunks={d['chunks']} indexed={d['indexed']} "
               f"skipped_unchanged={d['skipped_unchanged']} deleted={d['deleted']}")
    if d["tasks_stalled"]:
        typer.echo(f"  {d['tasks_stalled']} task(s) stalled: their worker was lost; a live worker runs "
                   "them again once their lease expires")
    for f in d["failed"]:
        typer.echo(f"  failed: {f['source']}: {f['error']}")


def wait_for_job(store: JobStore, job_id: str, *, show_progress: bool, timeout: float | None = None) -> Job:
    """Poll a job until it reaches a final state; draw a progress bar on a terminal."""
    from workers.jobstore import FINAL_STATES

    deadline = None if timeout is None else time.monotonic() + timeout
    bar = None
    if show_progress:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        bar = Progress(TextColumn("job {task.fields[job]}"), BarColumn(),
                       TextColumn("{task.completed}/{task.total} tasks"),
                       TextColumn("{task.fields[chunks]} chunks"), TimeRemainingColumn(),
                       transient=True, console=Console(stderr=True))
        bar.start()
        handle = bar.add_task("job", total=1, job=job_id, chunks=0)
    try:
        while True:
            snap = store.get(job_id)
            if snap is None:
                raise EsragError(f"job {job_id} vanished from the job store")
            if bar is not None:
                bar.update(handle, total=snap.tasks_total, completed=snap.tasks_done + snap.tasks_failed,
                           chunks=snap.counters["chunks"])
            if snap.status in FINAL_STATES:
                return snap
            if deadline is not None and time.monotonic() > deadline:
                raise EsragError(f"job {job_id} did not finish within {timeout:g} s; it goes on on the "
                                 f"workers (see `esrag job {job_id}`)")
            time.sleep(0.5)
    finally:
        if bar is not None:
            bar.stop()


def workers_online(settings: Settings, timeout: float = 1.0) -> bool:
    """True when some worker consumes ``settings.queue``."""
    from esrag.workerprobe import WorkerProbe

    with WorkerProbe(settings.redis_url, timeout) as probe:
        return probe.consumes(settings.queue)


def job_summary(j: Job) -> dict[str, object]:
    """A finished job in the shape of the in-process ingest summary."""
    from ingest.summary import COUNTERS

    d = j.to_dict()
    return {"job": j.id, **{k: d[k] for k in COUNTERS}, "failed": d["failed"], "index": j.index,
            "status": j.status, "seconds": round((j.finished or time.time()) - j.created, 3)}


def ingest(
    paths: Annotated[list[str], typer.Argument(help="files, folders (recursive) or glob patterns")],
    index: Annotated[str | None, typer.Option(help="index alias (default ESRAG_INDEX)")] = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="follow the job to its end")] = True,
    local: Annotated[bool, typer.Option("--local", help="ingest in this process, not on workers")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
    timeout: Annotated[
        float | None, typer.Option(help="with --wait: give up waiting after this many seconds", min=1)
    ] = None,
    id_scope: Annotated[str | None, typer.Option(
        "--id-scope", help=".jsonl ids: 'file' (each file its own ids, the default) or 'global'")] = None,
    sync: Annotated[bool, typer.Option(
        "--sync", help="also delete documents whose file under a given folder no longer exists")] = False,
) -> None:
    """Parse, chunk, embed and index documents (on workers when one is online)."""
    from esrag.terminal import progress_wanted
    from ingest.cli import print_summary, run_ingest
    from ingest.sources import expand_paths
    from workers.jobstore import JobStore
    from workers.submit import submit_files

    settings = load_settings(index=index, id_scope=id_scope)
    if local or (wait and not workers_online(settings)):
        summary = run_ingest(paths, settings, show_progress=progress_wanted(), sync=sync)
        if as_json:
            typer.echo(json.dumps(summary.to_dict(), indent=2, ensure_ascii=False))
        else:
            print_summary(summary)
        if summary.failed:
            raise typer.Exit(1)
        return
    files = expand_paths(paths, settings)
    synced = None
    if sync:  # the vanished files are no task's: this process deletes them
        from ingest.sync import sync_index

        synced = sync_index(settings, paths)
    job_id = submit_files(files, settings)
    if not wait:
        extra = {"deleted": synced.deleted, "deleted_sources": synced.sources} if synced else {}
        typer.echo(json.dumps({"job": job_id, "files": len(files), **extra}) if as_json else job_id)
        return
    import redis

    patience = min(timeout or settings.jobstore_retry_seconds, settings.jobstore_retry_seconds)
    try:
        done = wait_for_job(JobStore.from_url(settings.redis_url, patient=True, patience=patience), job_id,
                            show_progress=progress_wanted(), timeout=timeout)
    except redis.RedisError as exc:
        raise ServiceUnavailable(
            f"Redis at {settings.safe_redis_url} stayed unavailable ({type(exc).__name__}) while waiting for "
            f"job {job_id}; the job is kept: see `esrag job {job_id}` once Redis is back"
        ) from None
    summary = job_summary(done)
    if synced is not None:
        summary["deleted"] = int(summary["deleted"]) + synced.deleted  # type: ignore[call-overload]
        summary["deleted_sources"] = synced.sources
    if as_json:
        typer.echo(json.dumps(summary, indent=2, ensure_ascii=False))
    else:
        typer.echo(f"job {done.id} {done.status}: {summary['indexed']} chunks indexed from "
                   f"{summary['documents']} documents into {done.index} ({summary['skipped_unchanged']} "
                   f"unchanged, {summary['deleted']} stale chunks deleted, {len(done.failures)} failed)")
        for f in done.failures:
            typer.echo(f"failed: {f['source']}: {f['error']}")
    if done.failures or done.status in ("canceled", "failed"):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add the ingest, worker and job commands to ``app``."""
    app.command("ingest")(ingest)
    app.command("worker")(worker)
    app.command("jobs")(jobs)
    app.command("job")(job)


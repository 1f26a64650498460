"""Submitting ingest jobs: split the sources into bounded tasks, record, then enqueue."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import redis

from esrag.errors import EsragError, ServiceUnavailable
from esrag.settings import Settings
from workers.app import EXPAND_TASK_NAME, TASK_NAME, make_celery
from workers.jobstore import ExpandPlan, JobAccess, JobStore, is_expansion


def plan_tasks(files: list[Path], max_files: int, max_bytes: int) -> list[list[str]]:
    """Group files into tasks of at most ``max_files`` files and about ``max_bytes`` bytes."""
    tasks: list[list[str]] = []
    current: list[str] = []
    size = 0
    for path in files:
        try:
            nbytes = path.stat().st_size
        except OSError:
            nbytes = 0
        if current and (len(current) >= max_files or size + nbytes > max_bytes):
            tasks.append(current)
            current, size = [], 0
        current.append(str(path))
        size += nbytes
    if current:
        tasks.append(current)
    return tasks


def check_shared(files: list[Path], settings: Settings) -> None:
    """Refuse sources other workers could not read: with ESRAG_SHARED_ROOTS set, every
    file must lie under one of them (shared storage mounted at the same path everywhere)."""
    if not settings.shared_roots:
        return
    roots = [Path(os.path.realpath(r)) for r in settings.shared_roots]
    for f in files:
        real = Path(os.path.realpath(f))
        if not any(real.is_relative_to(root) for root in roots):
            raise EsragError(
                f"{f} is not under ESRAG_SHARED_ROOTS ({', '.join(map(str, roots))}); workers on "
                "other machines could not read it"
            )


def submit_files(files: list[Path], settings: Settings, access: JobAccess | None = None) -> str:
    """Record a job for ``files`` and enqueue its tasks; return the job id.

    Nothing is half-created: when Redis cannot be reached the job is refused, and a job
    whose tasks could not all be enqueued is removed again.
    """
    check_shared(files, settings)
    files = [Path(os.path.realpath(f)) for f in files]
    store = JobStore.from_url(settings.redis_url)
    tasks = plan_tasks(files, settings.task_max_files, settings.task_max_bytes)

    def record() -> tuple[str, list[tuple[str, list[str]]]]:
        job_id, task_ids = store.create(settings.index, tasks, queue=settings.queue,
                                        id_scope=settings.id_scope)
        if access is not None:  # before any task is enqueued: a worker reads it first
            store.set_access(job_id, access)
        return job_id, list(zip(task_ids, tasks, strict=True))

    return _record_and_enqueue(store, settings, record)


def _record_and_enqueue(store: JobStore, settings: Settings,
                        record: Callable[[], tuple[str, list[tuple[str, list[str]]]]]) -> str:
    """Record a job (``record`` returns its id and the (task id, files) to publish), then
    publish them; a Redis that does not answer refuses the job, and a job whose tasks could
    not all be published is removed again (ServiceUnavailable, one line, either way)."""
    try:
        store.r.ping()
        job_id, tasks = record()
    except redis.RedisError as exc:
        raise ServiceUnavailable(
            f"Redis at {settings.safe_redis_url} is unavailable ({type(exc).__name__}); job not submitted"
        ) from None
    app = make_celery(settings)
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1)
            for task_id, batch in tasks:
                enqueue(app, job_id, task_id, batch, settings)
    except Exception as exc:
        try:
            store.delete(job_id)
        except redis.RedisError:
            pass
        raise ServiceUnavailable(
            f"could not enqueue job tasks on {settings.safe_redis_url} ({type(exc).__name__}); "
            "job not submitted"
        ) from None
    finally:
        app.close()
    return job_id


def submit_expansion(sources: list[str], settings: Settings, access: JobAccess | None = None, *,
                     sync: bool = False) -> str:
    """Record a job in state ``expanding`` for ``sources`` (files or folders, resolved and
    checked by the caller) and enqueue the one task that expands them on a worker
    (workers/expand.py); return the job id at once. The worker walks the folders, applies
    ``ESRAG_INGEST_MAX_FILES`` and enqueues the file tasks as :func:`submit_files` would.
    """
    store = JobStore.from_url(settings.redis_url)
    plan = ExpandPlan(max_files=settings.ingest_max_files, task_max_files=settings.task_max_files,
                      task_max_bytes=settings.task_max_bytes, sync=sync)

    def record() -> tuple[str, list[tuple[str, list[str]]]]:
        job_id, task_id = store.create_expanding(settings.index, sources, plan, queue=settings.queue,
                                                 id_scope=settings.id_scope, access=access)
        return job_id, [(task_id, sources)]

    return _record_and_enqueue(store, settings, record)


# kombu's Redis transport serves priority 0 first: a task taken back from a lost worker
# (workers/leases.py) goes ahead of the tasks still queued, so it runs again in seconds.
PRIORITY_NORMAL = 3
PRIORITY_RECLAIMED = 0


def enqueue(app: object, job_id: str, task_id: str, files: list[str], settings: Settings, *,
            priority: int = PRIORITY_NORMAL) -> None:
    """Publish one task message (its Celery id is the task id, so requeues are traceable); a
    job's expansion task (``<job>-expand``, its files the job's sources) goes to the expansion."""
    app.send_task(  # type: ignore[attr-defined]
        EXPAND_TASK_NAME if is_expansion(task_id) else TASK_NAME,
        args=[job_id, task_id, files, settings.index], task_id=f"{task_id}",
        queue=settings.queue, retry=False, priority=priority,
    )


def retry_failed(job_id: str, settings: Settings) -> int:
    """Re-enqueue a job's failed tasks and the tasks of its failed files; return how many."""
    return _reenqueue(job_id, settings, lambda store: store.reopen_failed(job_id))


def requeue_unfinished(job_id: str, settings: Settings) -> int:
    """Rebuild a lost queue: re-enqueue every task of the job not yet counted."""
    return _reenqueue(job_id, settings, lambda store: [
        (tid, rec["files"]) for tid, rec in store.tasks(job_id).items()
        if rec.get("state") not in ("done", "failed") and not store.counted(job_id, tid)
    ])


def _reenqueue(
    job_id: str, settings: Settings, select: Callable[[JobStore], list[tuple[str, list[str]]]]
) -> int:
    store = JobStore.connect(settings)
    job = store.get(job_id)
    if job is None:
        raise EsragError(f"no job {job_id}")
    tasks = select(store)
    app = make_celery(settings)
    try:
        for task_id, files in tasks:
            enqueue(app, job_id, task_id, files, settings.model_copy(update={"index": job.index}))
    finally:
        app.close()
    return len(tasks)

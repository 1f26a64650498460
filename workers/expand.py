"""A job's folders expanded on a worker: the task behind ``POST /v1/ingest``.

The API records the job in state ``expanding`` with one task, ``<job>-expand``, whose
files are the submitted sources (resolved and checked against the allowed roots), and
answers at once. This task walks the sources one file at a time, holding at most
``ESRAG_INGEST_MAX_FILES`` paths (the submitter's cap, kept in the job's ExpandPlan); past
the cap the job fails with one line and nothing is planned. Otherwise it records the
planned file tasks once (JobStore.plan, one Lua script: a redelivered expansion finds them
planned and plans nothing), publishes them in order while it notes how many are out
(``planned``: a run that dies mid-way is followed by one that publishes only the rest),
then counts itself done.

It holds its lease like any task (workers/leases.py): a worker killed while expanding
stops renewing it, and a live worker's reaper publishes the expansion again.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from celery import shared_task
from celery.exceptions import Retry, SoftTimeLimitExceeded

from esrag.errors import EsragError
from esrag.settings import Settings
from workers.app import EXPAND_TASK_NAME
from workers.jobstore import ExpandPlan, JobStore
from workers.leases import Heartbeat, Leases


def over_cap_message(count: int, cap: int) -> str:
    """The one line of a job whose sources expand to more files than ``cap``."""
    return (f"the paths expand to {count} files, over ESRAG_INGEST_MAX_FILES ({cap}); nothing was "
            "ingested; submit fewer")


def vanished_message(source: str) -> str:
    """The one line of a source gone between the submit and the expansion."""
    return f"{source} no longer exists (removed after the job was submitted); not read"


class _CappedSet(set):
    """A set that stops growing at ``cap`` members: past the cap the expansion only
    counts files, so what it holds stays bounded by the cap."""

    def __init__(self, cap: int):
        super().__init__()
        self.cap = cap

    def add(self, item: object) -> None:
        if len(self) < self.cap:
            super().add(item)


@dataclass
class Expansion:
    """What the sources expand to: the files (at most the cap), how many there are, and
    the sources that failed."""

    files: list[Path] = field(default_factory=list)
    count: int = 0
    failures: dict[str, str] = field(default_factory=dict)


def outermost(sources: list[str]) -> list[str]:
    """``sources`` without those inside another source folder (their files are that
    folder's), in order."""
    folders = [Path(s) for s in sources if os.path.isdir(s)]
    return [s for s in sources
            if not any(Path(s) != f and Path(s).is_relative_to(f) for f in folders)]


def collect(sources: list[str], cap: int) -> Expansion:
    """Walk ``sources`` (resolved files and folders) one file at a time. Keeps at most
    ``cap`` files; past it only counts (files past the cap are not checked for repeats
    among themselves, so links to one file count once each). A source gone since the
    submit fails alone."""
    from ingest.sources import iter_paths

    out = Expansion()
    seen = _CappedSet(cap + 1)
    for source in outermost(sources):
        if not os.path.exists(source):
            out.failures[source] = vanished_message(source)
            continue
        try:
            for path in iter_paths([source], seen):
                out.count += 1
                if out.count <= cap:
                    out.files.append(path)
        except EsragError as exc:  # removed while it was walked
            out.failures[source] = str(exc)
    return out


def run_expansion(store: JobStore, settings: Settings, job_id: str, task_id: str, sources: list[str],
                  publish: Callable[[str, list[str]], None]) -> str:
    """Expand, plan and publish a job's tasks (the caller holds the expansion's lease);
    return "done", or "failed" past the cap. Safe to run again after a run that died at
    any point: what is planned is planned once, and only unpublished tasks are published."""
    from workers.submit import check_shared, plan_tasks

    if store.published(job_id) is None:
        plan = store.expand_plan(job_id) or ExpandPlan(
            max_files=settings.ingest_max_files, task_max_files=settings.task_max_files,
            task_max_bytes=settings.task_max_bytes)
        found = collect(sources, plan.max_files)
        if found.count > plan.max_files:
            store.fail_job(job_id, task_id, over_cap_message(found.count, plan.max_files))
            return "failed"
        check_shared(found.files, settings)
        deleted = 0
        if plan.sync:
            from ingest.sync import sync_index

            access = store.access(job_id)
            scope = {f"meta.{k}": v for k, v in access.stamp.items()} if access else None
            deleted = sync_index(settings, [s for s in sources if os.path.isdir(s)], scope=scope).deleted
        store.plan(job_id, plan_tasks(found.files, plan.task_max_files, plan.task_max_bytes),
                   found.failures, deleted)
    published = store.published(job_id) or 0
    for tid, files in store.unpublished(job_id):
        publish(tid, files)
        published += 1
        store.mark_published(job_id, published)
    store.record_result(job_id, task_id, {}, {})
    return "done"


@shared_task(bind=True, name=EXPAND_TASK_NAME, acks_late=True, reject_on_worker_lost=True, max_retries=None)
def expand_job(self, job_id: str, task_id: str, sources: list[str], index: str) -> str:  # noqa: ANN001
    """Expand a job's ``sources`` into file tasks on this worker (see the module doc)."""
    from workers.submit import enqueue
    from workers.tasks import _recycle_process, _transient, backoff, open_job

    settings, store, stop = open_job(job_id, task_id, index)
    if stop:
        return stop
    queue = store.r.hget(store._key(job_id), "queue") or settings.queue
    target = settings.model_copy(update={"queue": queue})
    leases = Leases(store, queue)
    worker = f"{socket.gethostname()}:{self.request.hostname}"
    verdict, token = leases.acquire(job_id, task_id, worker, settings.task_lease_seconds)
    if token is None:
        return verdict  # "counted", "held" or "gone": this delivery is a duplicate

    def publish(tid: str, files: list[str]) -> None:
        enqueue(self.app, job_id, tid, files, target)

    try:
        with Heartbeat(leases, job_id, task_id, token, settings.task_lease_seconds):
            outcome = run_expansion(store, target, job_id, task_id, sources, publish)
    except SoftTimeLimitExceeded:
        leases.expire(job_id, task_id, token, "timeout")
        _recycle_process()
        return "timed out"
    except Retry:
        raise
    except Exception as exc:
        if _transient(exc) and self.request.retries < settings.task_max_retries:
            leases.release(job_id, task_id, token, state="retrying")
            raise self.retry(exc=exc, countdown=backoff(self.request.retries,
                                                        settings.task_retry_backoff_max)) from None
        text = str(exc).splitlines()[0][:200] if str(exc) else ""
        reason = text if isinstance(exc, EsragError) else f"{type(exc).__name__}: {text}".strip()
        store.fail_job(job_id, task_id, f"expanding the paths failed: {reason}")
        outcome = "failed"
    leases.release(job_id, task_id, token)
    return outcome

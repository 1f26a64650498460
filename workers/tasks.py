"""The ingest task: one bounded batch of files through the ingest pipeline."""

from __future__ import annotations

import logging
import os
import random
import socket
from pathlib import Path

import redis
from celery import shared_task
from celery.exceptions import Retry, SoftTimeLimitExceeded
from elasticsearch import ApiError, ConnectionError, ConnectionTimeout, TransportError

from esrag.embedder import get_embedder
from esrag.errors import EsragError, ServiceUnavailable, one_line
from esrag.settings import Settings, load_settings
from ingest.summary import COUNTERS
from workers.app import TASK_NAME
from workers.jobstore import JobStore
from workers.leases import Heartbeat, Leases

TRANSIENT = (ConnectionError, ConnectionTimeout, TransportError, ServiceUnavailable,
             redis.ConnectionError, redis.TimeoutError)


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, TRANSIENT):
        return True
    return isinstance(exc, ApiError) and exc.meta.status in (429, 502, 503, 504)


def backoff(retries: int, cap: float) -> float:
    """Exponential backoff with jitter: about 1, 2, 4 ... seconds, at most ``cap``."""
    return min(cap, 2.0**retries) * random.uniform(0.75, 1.25)


def open_job(job_id: str, task_id: str, index: str) -> tuple[Settings, JobStore, str | None]:
    """The settings and job store a job's task runs with, and why it stops at once: ``None``
    to go on, "unknown job", or "canceled" (then this task is counted as canceled)."""
    settings = load_settings(index=index)
    store = JobStore.from_url(settings.redis_url, patient=True, patience=settings.jobstore_retry_seconds)
    status = store.status(job_id)
    if status is None:
        return settings, store, "unknown job"
    if status == "canceled":
        store.record_result(job_id, task_id, {}, {}, failed=False, error="canceled")
        return settings, store, "canceled"
    return settings, store, None


@shared_task(bind=True, name=TASK_NAME, acks_late=True, reject_on_worker_lost=True, max_retries=None)
def ingest_batch(self, job_id: str, task_id: str, files: list[str], index: str) -> str:  # noqa: ANN001
    """Ingest ``files`` into ``index`` for a job; count the result once; never block the job.

    The run holds the task's lease (workers/leases.py) while it works: a run that starts
    while another holds it, or after the result was counted, does nothing.
    """
    settings, store, stop = open_job(job_id, task_id, index)
    if stop:
        return stop
    worker = f"{socket.gethostname()}:{self.request.hostname}"
    queue, id_scope = store.r.hmget(store._key(job_id), ["queue", "id_scope"])
    queue = queue or settings.queue
    if id_scope and id_scope != settings.id_scope:  # the submitter's --id-scope, not this worker's
        settings = settings.model_copy(update={"id_scope": id_scope})
    leases = Leases(store, queue)
    verdict, token = leases.acquire(job_id, task_id, worker, settings.task_lease_seconds)
    if token is None:
        return verdict  # "counted", "held" or "gone": this delivery is a duplicate
    try:
        with Heartbeat(leases, job_id, task_id, token, settings.task_lease_seconds):
            outcome = _run(self, store, settings, job_id, task_id, files, worker, leases, token)
    except SoftTimeLimitExceeded:
        leases.expire(job_id, task_id, token, "timeout")  # a live reaper reruns or fails it
        _recycle_process()
        return "timed out"
    leases.release(job_id, task_id, token)
    return outcome


def _recycle_process() -> None:
    """End this pool process after a soft time limit: the exception may have cut through
    an import or a library's state (a half-imported torch fails every later import), so
    the next task gets a fresh process. The worker's main process forks a new one."""
    from billiard.process import current_process

    if current_process().name != "MainProcess":
        logging.getLogger("esrag.worker").warning("pool process %d ends after a soft time limit", os.getpid())
        os._exit(1)


def _run(self, store: JobStore, settings: Settings, job_id: str, task_id: str,  # noqa: ANN001
         files: list[str], worker: str, leases: Leases, token: str) -> str:
    from ingest.pipeline import ingest_files

    try:
        missing = [f for f in files if not Path(f).exists()]
        readable = [Path(f) for f in files if f not in missing]
        access = store.access(job_id)
        summary = ingest_files(readable, settings, embedder=get_embedder(settings),
                               stamp=access.stamp if access else None,
                               roots=[Path(r) for r in access.roots] if access else None)
    except (Retry, SoftTimeLimitExceeded):
        raise
    except Exception as exc:  # decide: retry transient failures, fail the task otherwise
        reason = one_line(exc)
        if _transient(exc) and self.request.retries < settings.task_max_retries:
            leases.release(job_id, task_id, token, state="retrying")
            raise self.retry(exc=exc, countdown=backoff(self.request.retries,
                                                        settings.task_retry_backoff_max)) from None
        tries = self.request.retries + 1
        prefix = "" if isinstance(exc, EsragError) else f"failed after {tries} tries: "
        store.record_result(job_id, task_id, {}, {f: prefix + reason for f in files},
                            failed=True, error=reason)
        return "failed"
    failures = {f["source"]: f["error"] for f in summary.failed}
    failures.update({f: f"not readable on worker {worker}" for f in missing})
    counters = {name: int(getattr(summary, name)) for name in COUNTERS}
    store.record_result(job_id, task_id, counters, failures)
    return "done"

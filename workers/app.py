"""The Celery application: Redis broker, late acks, one prefetched task per process."""

from __future__ import annotations

from celery import Celery

from esrag.settings import Settings

TASK_NAME = "esrag.ingest_batch"
EXPAND_TASK_NAME = "esrag.expand_job"  # a job's folders, expanded on a worker (workers/expand.py)


def make_celery(settings: Settings) -> Celery:
    """A Celery app for ``settings``.

    Delivery is at-least-once: tasks are acknowledged after they finish (acks_late), a
    task whose worker process dies is requeued (reject_on_worker_lost), and a message
    unacknowledged for ``task_visibility_timeout`` seconds is redelivered. A worker killed
    outright does not wait for that: its task's lease expires after
    ``task_lease_seconds`` and a live worker publishes it again (workers/leases.py).
    Tasks are idempotent, so redelivery duplicates nothing. Each task has a soft and a
    hard time limit, both below the visibility timeout.
    """
    app = Celery("esrag", broker=settings.redis_url, include=["workers.tasks", "workers.expand"])
    restore = max(1, min(10, settings.task_visibility_timeout // 5))
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=settings.queue,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        broker_transport_options={
            "visibility_timeout": settings.task_visibility_timeout,
            "unacked_restore_interval": restore,
            "unacked_restore_throttle": 1,
        },
        worker_send_task_events=True,
        task_send_sent_event=True,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        task_soft_time_limit=settings.task_soft_time_limit,
        task_time_limit=settings.task_time_limit,
    )
    return app

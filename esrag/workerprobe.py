"""Which Celery workers answer on the broker: the one probe behind `esrag status`, ingest and the dashboard.

Celery's remote-control ``inspect`` broadcasts on the broker and collects the replies
that arrive within ``timeout``. The probe never retries a broker connection: a Redis
that is down makes it fail at once rather than hang.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from celery import Celery


class WorkerProbe:
    """A broker connection for inspecting workers; keep it between polls, ``close`` it when done."""

    def __init__(self, broker_url: str, timeout: float = 1.0):
        from celery import Celery  # imported here: `esrag --help` must not load Celery

        self.timeout = timeout
        self.app: Celery = Celery("esrag-probe", broker=broker_url)
        self.app.conf.broker_connection_retry = False
        self.app.conf.broker_connection_retry_on_startup = False
        self.app.conf.broker_connection_max_retries = 0

    def stats(self) -> dict[str, dict[str, Any]]:
        """Each answering worker's name and its ``stats`` (pid, pool, uptime, totals)."""
        return self.app.control.inspect(timeout=self.timeout).stats() or {}

    def active_queues(self) -> dict[str, list[dict[str, Any]]]:
        """Each answering worker's consumed queues."""
        return self.app.control.inspect(timeout=self.timeout).active_queues() or {}

    def details(self, names: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
        """The running tasks and the consumed queues of the workers ``names`` (no broadcast)."""
        if not names:
            return {}, {}
        probe = self.app.control.inspect(destination=names, timeout=self.timeout, limit=len(names))
        return probe.active() or {}, probe.active_queues() or {}

    def consumes(self, queue: str) -> bool:
        """True when some worker consumes ``queue``; False also when the broker does not answer."""
        try:
            active = self.active_queues()
        except Exception:  # Redis down or no answer: no workers to hand a job to
            return False
        return any(q.get("name") == queue for queues in active.values() for q in queues)

    def close(self) -> None:
        """Release the broker connection."""
        self.app.close()

    def __enter__(self) -> WorkerProbe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""Each worker announces itself in Redis while it runs (esrag/workerlist.py): `esrag status`
lists the workers from there, without importing Celery or waiting for a broadcast."""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from esrag import workerlist
from esrag.settings import Settings

log = logging.getLogger("esrag.presence")


class Presence:
    """Announces one worker every ``interval`` seconds from a daemon thread; withdraws it on stop."""

    def __init__(self, settings: Settings, name: str, info: dict[str, Any]):
        import redis

        self.client = redis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=5)
        self.name, self.info = name, info
        self.ttl = settings.task_lease_seconds
        self.interval = self.ttl / 3
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="esrag-presence", daemon=True)

    def start(self) -> None:
        """Announce now, then keep announcing in the background."""
        self._announce()
        self._thread.start()

    def stop(self) -> None:
        """Stop announcing and withdraw (a worker killed outright expires instead)."""
        self._stop.set()
        self._thread.join(timeout=10)
        try:
            workerlist.withdraw(self.client, self.name)
        except Exception as exc:  # Redis gone: the announcement expires by itself
            log.warning("worker presence: %s", type(exc).__name__)
        self.client.close()

    def _announce(self) -> None:
        try:
            workerlist.announce(self.client, self.name, self.info, self.ttl)
        except Exception as exc:  # Redis restarting: the next round announces again
            log.warning("worker presence: %s", type(exc).__name__)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._announce()


def install_presence(settings: Settings, queues: list[str]) -> None:
    """Announce this worker from the moment it is ready until it shuts down (Celery signals)."""
    from celery import signals

    running: list[Presence] = []

    def start(sender: Any = None, **_: object) -> None:
        controller = getattr(sender, "controller", None)
        concurrency = getattr(controller, "concurrency", None) or settings.worker_concurrency
        presence = Presence(settings, getattr(sender, "hostname", None) or f"pid-{os.getpid()}",
                            {"pid": os.getpid(), "concurrency": concurrency, "queues": queues})
        presence.start()
        running.append(presence)

    def stop(**_: object) -> None:
        while running:
            running.pop().stop()

    signals.worker_ready.connect(start, weak=False)
    signals.worker_shutdown.connect(stop, weak=False)

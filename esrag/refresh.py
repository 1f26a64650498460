"""The one owner of ``refresh_interval`` toggling: a pause for bulk loads that a crash cannot leak.

A large load runs faster with ``refresh_interval: -1``; a load killed before it restores
the value would leave the index unrefreshed for good. So the pause is recorded in the
index's ``_meta.esrag.refresh_pause`` (owner id, host, pid, the value to restore, and a
lease renewed while the load runs). A load that finds ``-1`` adopts the pause when its
record is missing, its lease expired, or its owner process on this host is gone, and
restores the recorded value when it ends. A live owner's pause is left to that owner;
at exit a load checks once more, so a pause whose owner died meanwhile is restored too.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from types import TracebackType
from typing import Any

import psutil
from elasticsearch import Elasticsearch

PAUSED = "-1"
META_KEY = "refresh_pause"


def _refresh_interval(client: Elasticsearch, index: str) -> str | None:
    current = client.indices.get_settings(index=index, name="index.refresh_interval")
    value = current.get(index, {}).get("settings", {}).get("index", {}).get("refresh_interval")
    return None if value is None else str(value)


def _esrag_meta(client: Elasticsearch, index: str) -> dict[str, Any]:
    mapping = client.indices.get_mapping(index=index)
    return dict(mapping[index]["mappings"].get("_meta", {}).get("esrag", {}))


def _put_record(client: Elasticsearch, index: str, record: dict[str, Any] | None) -> None:
    meta = _esrag_meta(client, index)
    if record is None:
        meta.pop(META_KEY, None)
    else:
        meta[META_KEY] = record
    client.indices.put_mapping(index=index, meta={"esrag": meta})


def owner_alive(record: dict[str, Any], now: float | None = None) -> bool:
    """Whether the load that wrote ``record`` may still be running."""
    now = time.time() if now is None else now
    if float(record.get("expires", 0)) < now:
        return False
    if record.get("host") == socket.gethostname():
        pid = int(record.get("pid", 0))
        try:
            proc = psutil.Process(pid)
        except (psutil.NoSuchProcess, ValueError):
            return False
        return abs(proc.create_time() - float(record.get("started", 0))) < 2.0
    return True


class RefreshPause:
    """``with RefreshPause(client, index, lease=...) as p: ... p.pause() ... p.renew()``.

    ``pause()`` (idempotent, may come late in a load) turns refresh off unless a live load
    already did; ``renew()`` extends the lease (cheap: it writes at most every lease/4 s);
    leaving the block restores the value saved when the pause began, crash or not, and
    restores a pause left behind by a crashed load even when this load never paused.
    """

    def __init__(self, client: Elasticsearch, index: str, *, lease: float = 300.0):
        self.client = client
        self.index = index
        self.lease = lease
        self.owner = uuid.uuid4().hex
        self.owned = False
        self.attempted = False
        self._renewed = 0.0
        self._previous: str | None = None

    def _record(self) -> dict[str, Any]:
        me = psutil.Process(os.getpid())
        return {"owner": self.owner, "host": socket.gethostname(), "pid": me.pid,
                "started": me.create_time(), "previous": self._previous,
                "expires": time.time() + self.lease}

    def _adopt_if_abandoned(self) -> bool:
        """Take over a pause whose owner is gone; True when this load now owns it."""
        record = _esrag_meta(self.client, self.index).get(META_KEY)
        if isinstance(record, dict) and owner_alive(record):
            return False
        self._previous = record.get("previous") if isinstance(record, dict) else None
        _put_record(self.client, self.index, self._record())
        self.owned = True
        self._renewed = time.monotonic()
        return True

    def pause(self) -> None:
        """Turn refresh off for this load (or adopt an abandoned pause); once per load."""
        if self.attempted:
            return
        self.attempted = True
        current = _refresh_interval(self.client, self.index)
        if current == PAUSED:
            self._adopt_if_abandoned()
            return
        self._previous = current
        _put_record(self.client, self.index, self._record())
        self.client.indices.put_settings(index=self.index, settings={"index": {"refresh_interval": PAUSED}})
        self.owned = True
        self._renewed = time.monotonic()

    def renew(self) -> None:
        """Extend this load's lease when a quarter of it has passed."""
        if self.owned and time.monotonic() - self._renewed > self.lease / 4:
            _put_record(self.client, self.index, self._record())
            self._renewed = time.monotonic()

    def restore(self) -> None:
        """Put back the saved value if this load owns the pause (or its owner died meanwhile)."""
        if not self.owned and _refresh_interval(self.client, self.index) == PAUSED:
            self._adopt_if_abandoned()  # a pause left by a crashed load, seen even by a small load
        if not self.owned:
            return
        record = _esrag_meta(self.client, self.index).get(META_KEY)
        if isinstance(record, dict) and record.get("owner") != self.owner:
            self.owned = False  # another load adopted it after our lease ran out: theirs now
            return
        self.client.indices.put_settings(
            index=self.index, settings={"index": {"refresh_interval": self._previous}}
        )
        _put_record(self.client, self.index, None)
        self.owned = False

    def __enter__(self) -> RefreshPause:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.restore()

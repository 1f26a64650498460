"""Leases on running tasks: how a task lost with its worker runs again in seconds.

Celery's Redis transport redelivers an unacknowledged message only after the visibility
timeout (an hour by default), far too late for a worker killed outright. So every run of
a task holds a *lease* in the job store:

- ``esrag:leases:<queue>``  sorted set: "<job id> <task id>" -> lease expiry (Redis time)

The run takes the lease when it starts (:meth:`Leases.acquire`, with a fresh token kept in
the task record), a heartbeat thread in the same process renews it every third of
``ESRAG_TASK_LEASE_SECONDS`` (:class:`Heartbeat`), and the run gives it back when its result
is recorded. A run that dies stops renewing; once its lease expires, any live worker
consuming that queue (:class:`Reaper`, a thread in each worker's main process) marks the
task ``stalled``, counts the loss, and publishes the task again, or, after
``ESRAG_TASK_MAX_ATTEMPTS`` losses, records its files as failures. Every step is one Lua
script, so two reapers never reclaim the same lease and a run never starts while another
run holds a live lease on the same task. Times are Redis's ``TIME``, so worker clocks do
not matter.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable

import redis

from esrag.settings import Settings
from workers.jobstore import JobStore, is_expansion, lease_key, member

log = logging.getLogger("esrag.leases")

_NOW = "local t = redis.call('TIME') local now = tonumber(t[1]) + tonumber(t[2]) / 1000000\n"

# KEYS: job, tasks, done, leases   ARGV: task id, token, worker, period, member
_ACQUIRE = _NOW + """
if redis.call('SISMEMBER', KEYS[3], ARGV[1]) == 1 then return {'counted', 0} end
if redis.call('EXISTS', KEYS[1]) == 0 then return {'gone', 0} end
local raw = redis.call('HGET', KEYS[2], ARGV[1])
local rec = raw and cjson.decode(raw) or {attempts = 0}
if redis.call('ZSCORE', KEYS[4], ARGV[5]) then return {'held', 0} end
rec.state = 'running'
rec.worker = ARGV[3]
rec.token = ARGV[2]
rec.loss = nil
rec.attempts = (tonumber(rec.attempts) or 0) + 1
redis.call('HSET', KEYS[2], ARGV[1], cjson.encode(rec))
redis.call('ZADD', KEYS[4], now + tonumber(ARGV[4]), ARGV[5])
redis.call('HSETNX', KEYS[1], 'started', now)
if redis.call('HGET', KEYS[1], 'status') == 'queued' then redis.call('HSET', KEYS[1], 'status', 'running') end
return {'ok', rec.attempts}
"""

# KEYS: tasks, leases   ARGV: task id, token, period, member  -> 1 renewed, 0 lease lost
_RENEW = _NOW + """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw or not redis.call('ZSCORE', KEYS[2], ARGV[4]) then return 0 end
if cjson.decode(raw).token ~= ARGV[2] then return 0 end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[4])
return 1
"""

# KEYS: tasks, leases   ARGV: task id, token, member, loss ('' to release, else expire now),
#                             state to record on release ('' keeps it)
_END = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 0 end
local rec = cjson.decode(raw)
if rec.token ~= ARGV[2] or not redis.call('ZSCORE', KEYS[2], ARGV[3]) then return 0 end
if ARGV[4] == '' then
  redis.call('ZREM', KEYS[2], ARGV[3])
  if ARGV[5] ~= '' and rec.state == 'running' then
    rec.state = ARGV[5]
    redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(rec))
  end
else
  rec.loss = ARGV[4]
  redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(rec))
  redis.call('ZADD', KEYS[2], 0, ARGV[3])
end
return 1
"""

# KEYS: job, tasks, done, leases   ARGV: task id, member, max attempts
# -> {'live'|'counted'|'gone'} or {'requeue'|'poison', losses, loss, files json}
_RECLAIM = _NOW + """
local expiry = redis.call('ZSCORE', KEYS[4], ARGV[2])
if not expiry or tonumber(expiry) > now then return {'live'} end
redis.call('ZREM', KEYS[4], ARGV[2])
if redis.call('SISMEMBER', KEYS[3], ARGV[1]) == 1 then return {'counted'} end
local raw = redis.call('HGET', KEYS[2], ARGV[1])
if not raw or redis.call('EXISTS', KEYS[1]) == 0 then return {'gone'} end
local rec = cjson.decode(raw)
rec.lost = (tonumber(rec.lost) or 0) + 1
local loss = rec.loss or 'died'
rec.token = nil
rec.loss = nil
rec.state = 'stalled'
redis.call('HSET', KEYS[2], ARGV[1], cjson.encode(rec))
local verdict = 'requeue'
if rec.lost >= tonumber(ARGV[3]) then verdict = 'poison' end
return {verdict, rec.lost, loss, cjson.encode(rec.files or {})}
"""


# KEYS: tasks, leases   ARGV: task id, member, loss  (undo a reclaim whose publish failed)
_UNRECLAIM = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 0 end
local rec = cjson.decode(raw)
rec.lost = math.max(0, (tonumber(rec.lost) or 1) - 1)
rec.loss = ARGV[3]
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(rec))
redis.call('ZADD', KEYS[2], 0, ARGV[2])
return 1
"""


def loss_message(loss: str, attempts: int, soft_limit: float, doing: str = "processing this file") -> str:
    """The one-line failure of a task that was lost ``attempts`` times while ``doing``."""
    count = f"{attempts} attempt{'' if attempts == 1 else 's'}"
    if loss == "timeout":
        return f"task timed out after {soft_limit:g} s while {doing} ({count})"
    return f"worker died while {doing} ({count})"


class Leases:
    """The lease operations on one queue's lease set."""

    def __init__(self, store: JobStore, queue: str):
        self.store = store
        self.key = lease_key(queue)
        r = store.r
        self._acquire = r.register_script(_ACQUIRE)
        self._renew = r.register_script(_RENEW)
        self._end = r.register_script(_END)
        self._reclaim = r.register_script(_RECLAIM)
        self._unreclaim = r.register_script(_UNRECLAIM)

    def _keys(self, job_id: str) -> list[str]:
        k = self.store._key
        return [k(job_id), k(job_id, "tasks"), k(job_id, "done"), self.key]

    def acquire(self, job_id: str, task_id: str, worker: str, period: float) -> tuple[str, str | None]:
        """Take the task's lease for a new run.

        Returns (verdict, token): "ok" with the run's token, or "counted" (its result is in
        already), "held" (another run holds the lease) or "gone" (no such job) with None.
        """
        token = uuid.uuid4().hex
        verdict, _ = self._acquire(keys=self._keys(job_id),
                                   args=[task_id, token, worker, period, member(job_id, task_id)])
        verdict = verdict.decode() if isinstance(verdict, bytes) else verdict
        return verdict, (token if verdict == "ok" else None)

    def renew(self, job_id: str, task_id: str, token: str, period: float) -> bool:
        """Extend the lease by ``period`` seconds; False when this run no longer holds it."""
        keys = [self.store._key(job_id, "tasks"), self.key]
        return bool(self._renew(keys=keys, args=[task_id, token, period, member(job_id, task_id)]))

    def release(self, job_id: str, task_id: str, token: str, state: str = "") -> bool:
        """Give the lease back: the run's result is recorded, or (``state`` "retrying") the
        task was published again to retry a transient failure."""
        keys = [self.store._key(job_id, "tasks"), self.key]
        return bool(self._end(keys=keys, args=[task_id, token, member(job_id, task_id), "", state]))

    def expire(self, job_id: str, task_id: str, token: str, loss: str) -> bool:
        """End the lease at once as a lost run (``loss``: "timeout" or "died")."""
        keys = [self.store._key(job_id, "tasks"), self.key]
        return bool(self._end(keys=keys, args=[task_id, token, member(job_id, task_id), loss, ""]))

    def expired(self, limit: int = 100) -> list[tuple[str, str]]:
        """(job id, task id) of leases past their expiry, oldest first."""
        secs, micros = self.store.r.time()
        now = secs + micros / 1e6
        out = []
        for m in self.store.r.zrangebyscore(self.key, "-inf", now, start=0, num=limit):
            job_id, _, task_id = (m.decode() if isinstance(m, bytes) else m).partition(" ")
            out.append((job_id, task_id))
        return out

    def reclaim(self, job_id: str, task_id: str, max_attempts: int) -> tuple[str, int, str, list[str]]:
        """Take back one expired lease: (verdict, losses, loss kind, files).

        Verdict "requeue": publish the task again; "poison": it was lost ``max_attempts``
        times; "live", "counted", "gone": nothing to do.
        """
        res = self._reclaim(keys=self._keys(job_id), args=[task_id, member(job_id, task_id), max_attempts])
        res = [x.decode() if isinstance(x, bytes) else x for x in res]
        if res[0] not in ("requeue", "poison"):
            return res[0], 0, "", []
        files = json.loads(res[3])
        return res[0], int(res[1]), res[2], list(files) if isinstance(files, list) else []

    def unreclaim(self, job_id: str, task_id: str, loss: str) -> None:
        """Put an expired lease back (its task could not be published): the loss is not
        counted, and the next reaper round reclaims it again."""
        keys = [self.store._key(job_id, "tasks"), self.key]
        self._unreclaim(keys=keys, args=[task_id, member(job_id, task_id), loss])


class Heartbeat:
    """Renews one run's lease from a daemon thread while the run works."""

    def __init__(self, leases: Leases, job_id: str, task_id: str, token: str, period: float):
        self.leases, self.job_id, self.task_id, self.token = leases, job_id, task_id, token
        self.period = period
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="esrag-lease-heartbeat", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.period / 3):
            try:
                if not self.leases.renew(self.job_id, self.task_id, self.token, self.period):
                    log.warning("lease on %s lost; another run may take the task over", self.task_id)
                    return
            except redis.RedisError as exc:  # Redis restarting: try again at the next beat
                log.warning("lease renewal of %s failed: %s", self.task_id, type(exc).__name__)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class Reaper:
    """Reclaims expired leases of one queue from a daemon thread (one per worker)."""

    def __init__(self, leases: Leases, *, interval: float, max_attempts: int, soft_limit: float,
                 publish: Callable[[str, str, list[str], str], None]):
        self.leases, self.interval, self.max_attempts = leases, interval, max_attempts
        self.soft_limit = soft_limit
        self.publish = publish
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="esrag-lease-reaper", daemon=True)

    def start(self) -> None:
        """Start reaping in the background."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread (it finishes the lease at hand)."""
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.reap()
            except Exception as exc:  # Redis restarting, broker hiccup: next round
                log.warning("lease reaper: %s", type(exc).__name__)

    def reap(self) -> list[tuple[str, str, str]]:
        """Reclaim every expired lease now; return (job id, task id, verdict) of each."""
        store = self.leases.store
        done: list[tuple[str, str, str]] = []
        for job_id, task_id in self.leases.expired():
            verdict, losses, loss, files = self.leases.reclaim(job_id, task_id, self.max_attempts)
            if verdict == "poison" and is_expansion(task_id):  # the job ends: nothing was planned
                store.fail_job(job_id, task_id, loss_message(loss, losses, self.soft_limit,
                                                             "expanding the job's paths"))
            elif verdict == "poison":
                reason = loss_message(loss, losses, self.soft_limit)
                store.record_result(job_id, task_id, {}, dict.fromkeys(files, reason), failed=True,
                                    error=reason)
            elif verdict == "requeue":
                index = store.r.hget(store._key(job_id), "index") or ""
                if store.status(job_id) == "canceled":
                    store.record_result(job_id, task_id, {}, {}, failed=False, error="canceled")
                else:
                    log.warning("task %s lost (%s, %d of %d attempts); publishing it again",
                                task_id, loss, losses, self.max_attempts)
                    try:
                        self.publish(job_id, task_id, files, index)
                    except Exception:
                        self.leases.unreclaim(job_id, task_id, loss)  # the next round tries again
                        raise
            done.append((job_id, task_id, verdict))
        return done



def install_reaper(settings: Settings, queues: list[str]) -> None:
    """Run a :class:`Reaper` per consumed queue in this worker's main process, from the
    moment the worker is ready until it shuts down (Celery signals)."""
    from celery import signals

    from workers.app import make_celery
    from workers.submit import PRIORITY_RECLAIMED, enqueue

    running: list[Reaper] = []

    def start(**_: object) -> None:
        store = JobStore.from_url(settings.redis_url, patient=True, patience=settings.jobstore_retry_seconds)
        app = make_celery(settings)
        for queue in queues:
            target = settings.model_copy(update={"queue": queue})

            def publish(job_id: str, task_id: str, files: list[str], index: str,
                        target: Settings = target) -> None:
                enqueue(app, job_id, task_id, files,
                        target.model_copy(update={"index": index or target.index}),
                        priority=PRIORITY_RECLAIMED)

            reaper = Reaper(Leases(store, queue), interval=settings.task_lease_seconds / 3,
                            max_attempts=settings.task_max_attempts,
                            soft_limit=settings.task_soft_time_limit or 0.0, publish=publish)
            reaper.start()
            running.append(reaper)

    def stop(**_: object) -> None:
        for reaper in running:
            reaper.stop()

    signals.worker_ready.connect(start, weak=False)
    signals.worker_shutdown.connect(stop, weak=False)

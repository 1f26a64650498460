"""The durable record of ingest jobs, in Redis (AOF on).

Redis rather than an ES index: it is already the broker, its AOF makes every write
durable within a second, its hashes give atomic counters, and a job must stay readable
and updatable while Elasticsearch is down (tasks back off and retry then). Layout:

- ``esrag:jobs``                 sorted set of job ids by creation time
- ``esrag:job:<id>``             hash: status, index, timestamps and counters; for a job
                                 submitted over HTTP also ``access`` (JSON of JobAccess),
                                 ``expand`` (JSON of ExpandPlan) and, once its folders are
                                 expanded, ``planned`` (how many of the planned tasks are
                                 published); ``error`` for a failed job
- ``esrag:job:<id>:tasks``       hash: task id -> JSON {"files", "state", "attempts", "error"}
- ``esrag:job:<id>:done``        set of task ids whose result was counted (once each)
- ``esrag:job:<id>:failures``    hash: source -> one-line reason
- ``esrag:job:<id>:rate``        list of "unix_ts chunks" samples for the throughput chart
- ``esrag:leases:<queue>``       sorted set of the leases of running tasks (workers/leases.py)

A task's result is counted exactly once (a Lua script adds the task to ``done`` and
increments the counters atomically), so a redelivered task never double-counts.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from esrag.errors import ServiceUnavailable
from esrag.settings import Settings
from ingest.summary import COUNTERS

FINAL_STATES = ("completed", "completed_with_failures", "canceled", "failed")
EXPAND_SUFFIX = "-expand"  # the task id of a job's folder expansion: "<job id>-expand"


def is_expansion(task_id: str) -> bool:
    """True for the task that expands a job's folders (workers/expand.py)."""
    return task_id.endswith(EXPAND_SUFFIX)


def lease_key(queue: str) -> str:
    """The sorted set of the leases of the tasks of ``queue`` (member -> expiry)."""
    return f"esrag:leases:{queue}"


def member(job_id: str, task_id: str) -> str:
    """A task's member in its queue's lease set."""
    return f"{job_id} {task_id}"

_RECORD_RESULT = """
if redis.call('SADD', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
local n = tonumber(ARGV[4])
for i = 1, n do
  redis.call('HINCRBY', KEYS[1], ARGV[4 + 2 * i - 1], ARGV[4 + 2 * i])
end
redis.call('HINCRBY', KEYS[1], ARGV[3], 1)
local failures = cjson.decode(ARGV[5 + 2 * n])
for src, err in pairs(failures) do redis.call('HSET', KEYS[4], src, err) end
local total = tonumber(redis.call('HGET', KEYS[1], 'tasks_total'))
local done = tonumber(redis.call('HGET', KEYS[1], 'tasks_done') or '0')
local failed = tonumber(redis.call('HGET', KEYS[1], 'tasks_failed') or '0')
if done + failed >= total and redis.call('HGET', KEYS[1], 'status') ~= 'canceled' then
  local nfail = redis.call('HLEN', KEYS[4])
  if nfail > 0 then
    redis.call('HSET', KEYS[1], 'status', 'completed_with_failures')
  else
    redis.call('HSET', KEYS[1], 'status', 'completed')
  end
  redis.call('HSET', KEYS[1], 'finished', ARGV[6 + 2 * n])
end
return 1
"""


# KEYS: job, tasks, failures   ARGV: [[task id, record json], ...], files, failures json, deleted
_PLAN = """
if redis.call('HEXISTS', KEYS[1], 'planned') == 1 then return 0 end
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local tasks = cjson.decode(ARGV[1])
for _, pair in ipairs(tasks) do redis.call('HSET', KEYS[2], pair[1], pair[2]) end
redis.call('HINCRBY', KEYS[1], 'tasks_total', #tasks)
redis.call('HSET', KEYS[1], 'files_total', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'deleted', ARGV[4])
for src, err in pairs(cjson.decode(ARGV[3])) do redis.call('HSET', KEYS[3], src, err) end
redis.call('HSET', KEYS[1], 'planned', 0)
if redis.call('HGET', KEYS[1], 'status') == 'expanding' then
  redis.call('HSET', KEYS[1], 'status', 'queued')
end
return 1
"""

# KEYS: job, done, tasks   ARGV: task id, record json, error, now
_FAIL_JOB = """
if redis.call('SADD', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
redis.call('HINCRBY', KEYS[1], 'tasks_failed', 1)
if redis.call('HGET', KEYS[1], 'status') ~= 'canceled' then
  redis.call('HSET', KEYS[1], 'status', 'failed', 'error', ARGV[3], 'finished', ARGV[4])
end
return 1
"""


@dataclass
class ExpandPlan:
    """How a job submitted over HTTP is expanded on a worker: the submitter's cap on files
    (ESRAG_INGEST_MAX_FILES), task size, and whether vanished files are synced away."""

    max_files: int
    task_max_files: int
    task_max_bytes: int
    sync: bool = False


@dataclass
class Job:
    """A snapshot of one job."""

    id: str
    status: str
    index: str
    created: float
    started: float | None
    finished: float | None
    tasks_total: int
    tasks_done: int
    tasks_failed: int
    files_total: int
    counters: dict[str, int]
    failures: list[dict[str, str]] = field(default_factory=list)
    tasks_running: int = 0
    tasks_stalled: int = 0
    error: str | None = None  # why a failed job failed (one line)

    @property
    def progress(self) -> float:
        """Share of tasks finished (done or failed), 0..1."""
        if self.tasks_total == 0:
            return 1.0
        return (self.tasks_done + self.tasks_failed) / self.tasks_total

    def to_dict(self) -> dict[str, Any]:
        """JSON form used by the CLI, the API and the dashboard."""
        end = self.finished or time.time()
        elapsed = (end - self.started) if self.started else 0.0
        rate = self.counters.get("chunks", 0) / elapsed if elapsed > 0 else 0.0
        remaining = None
        if 0 < self.progress < 1 and elapsed > 0 and not self.tasks_stalled:
            remaining = elapsed * (1 - self.progress) / self.progress
        return {
            "id": self.id,
            "status": self.status,
            "index": self.index,
            "created": self.created,
            "started": self.started,
            "finished": self.finished,
            "tasks_total": self.tasks_total,
            "tasks_done": self.tasks_done,
            "tasks_failed": self.tasks_failed,
            "files_total": self.files_total,
            "tasks_running": self.tasks_running,
            "tasks_stalled": self.tasks_stalled,
            "progress": round(self.progress, 4),
            "chunks_per_s": round(rate, 2),
            "eta_s": round(remaining, 1) if remaining is not None else None,
            **self.counters,
            "failed": self.failures,
            "error": self.error,
        }


def retries_for(patience: float) -> int:
    """Retries of a backoff of 0.25, 0.5, 1 ... capped at 5 s that last about ``patience`` s."""
    total, n = 0.0, 0
    while total < patience:
        total += min(5.0, 0.25 * 2**n)
        n += 1
    return max(n, 1)


@dataclass
class JobAccess:
    """The access a job was submitted with over HTTP: the key's name, the metadata it stamps
    on every document, and the allowed roots each file is checked against when opened."""

    owner: str
    stamp: dict[str, str] = field(default_factory=dict)
    roots: list[str] = field(default_factory=list)


class JobStore:
    """Reads and writes job records in Redis."""

    def __init__(self, client: redis.Redis):
        self.r = client
        self._record = client.register_script(_RECORD_RESULT)
        self._plan = client.register_script(_PLAN)
        self._fail_job = client.register_script(_FAIL_JOB)

    @classmethod
    def from_url(cls, url: str, *, patient: bool = False, patience: float = 120.0) -> JobStore:
        """A store on the Redis at ``url``.

        A patient store (workers, ``--wait``) retries every call, with exponential backoff
        capped at 5 s, for about ``patience`` seconds through a Redis restart (connection
        refused, timeouts, LOADING while Redis reads its AOF back); an impatient one
        (submission, API) fails at once so the user hears about it.
        """
        kwargs: dict[str, Any] = {"decode_responses": True, "socket_timeout": 10,
                                  "socket_connect_timeout": 5}
        if patient:
            kwargs["retry"] = Retry(ExponentialBackoff(cap=5.0, base=0.25), retries=retries_for(patience))
            kwargs["retry_on_error"] = [redis.ConnectionError, redis.TimeoutError]
        return cls(redis.Redis.from_url(url, **kwargs))

    @classmethod
    def connect(cls, settings: Settings) -> JobStore:
        """An impatient store on ``settings.redis_url``, checked with a PING.

        Raises ServiceUnavailable with one line when Redis does not answer.
        """
        store = cls.from_url(settings.redis_url)
        try:
            store.r.ping()
        except redis.RedisError:
            raise ServiceUnavailable(f"Redis at {settings.safe_redis_url} is unavailable") from None
        return store

    @staticmethod
    def _key(job_id: str, part: str = "") -> str:
        return f"esrag:job:{job_id}" + (f":{part}" if part else "")

    def create(self, index: str, tasks: list[list[str]], *, queue: str = "ingest",
               id_scope: str = "file") -> tuple[str, list[str]]:
        """Record a new job and its tasks in one transaction; return (job id, task ids).

        ``id_scope`` (how .jsonl ids are scoped, `esrag ingest --id-scope`) is the submitter's:
        every task of the job runs with it, whatever the workers' own setting."""
        job_id = uuid.uuid4().hex[:12]
        now = time.time()
        task_ids = [f"{job_id}-{i:05d}" for i in range(len(tasks))]
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(self._key(job_id), mapping={
            "id": job_id, "status": "queued", "index": index, "queue": queue, "id_scope": id_scope,
            "created": now,
            "tasks_total": len(tasks), "tasks_done": 0, "tasks_failed": 0,
            "files_total": sum(len(t) for t in tasks), **{c: 0 for c in COUNTERS},
        })
        if tasks:
            pipe.hset(self._key(job_id, "tasks"), mapping={
                tid: json.dumps({"files": files, "state": "pending", "attempts": 0})
                for tid, files in zip(task_ids, tasks, strict=True)
            })
        else:
            pipe.hset(self._key(job_id), mapping={"status": "completed", "finished": now})
        pipe.zadd("esrag:jobs", {job_id: now})
        pipe.execute()
        return job_id, task_ids

    def create_expanding(self, index: str, sources: list[str], plan: ExpandPlan, *, queue: str = "ingest",
                         id_scope: str = "file", access: JobAccess | None = None) -> tuple[str, str]:
        """Record a new job whose ``sources`` a worker expands (status ``expanding``, one
        task: the expansion); return (job id, expansion task id). ``access`` is recorded in
        the same transaction, so a worker never sees the job without it."""
        job_id = uuid.uuid4().hex[:12]
        task_id = job_id + EXPAND_SUFFIX
        now = time.time()
        fields: dict[str, Any] = {
            "id": job_id, "status": "expanding", "index": index, "queue": queue, "id_scope": id_scope,
            "created": now, "tasks_total": 1, "tasks_done": 0, "tasks_failed": 0, "files_total": 0,
            **{c: 0 for c in COUNTERS}, "expand": json.dumps(asdict(plan)),
        }
        if access is not None:
            fields["access"] = json.dumps(asdict(access))
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(self._key(job_id), mapping=fields)
        pipe.hset(self._key(job_id, "tasks"), task_id,
                  json.dumps({"files": sources, "state": "pending", "attempts": 0}))
        pipe.zadd("esrag:jobs", {job_id: now})
        pipe.execute()
        return job_id, task_id

    def expand_plan(self, job_id: str) -> ExpandPlan | None:
        """The job's ExpandPlan (None for a job planned by its submitter)."""
        raw = self.r.hget(self._key(job_id), "expand")
        return ExpandPlan(**json.loads(raw)) if raw else None

    def plan(self, job_id: str, tasks: list[list[str]], failures: dict[str, str], deleted: int = 0) -> bool:
        """Record the tasks an expansion planned (ids ``<job>-00000``...) with the failures
        of its sources, once: False when the job was planned already (a redelivered
        expansion) or is gone."""
        ids = [f"{job_id}-{i:05d}" for i in range(len(tasks))]
        records = [[tid, json.dumps({"files": files, "state": "pending", "attempts": 0})]
                   for tid, files in zip(ids, tasks, strict=True)]
        return bool(self._plan(
            keys=[self._key(job_id), self._key(job_id, "tasks"), self._key(job_id, "failures")],
            args=[json.dumps(records), sum(len(t) for t in tasks), json.dumps(failures or {}), int(deleted)],
        ))

    def published(self, job_id: str) -> int | None:
        """How many planned tasks an expansion has published; None before it planned any."""
        done = self.r.hget(self._key(job_id), "planned")
        return None if done is None else int(done)

    def unpublished(self, job_id: str) -> list[tuple[str, list[str]]]:
        """The planned tasks an expansion has not published yet, in order."""
        done = self.published(job_id)
        if done is None:
            return []
        planned = [(tid, rec["files"]) for tid, rec in self.tasks(job_id).items()
                   if not is_expansion(tid) and "-r" not in tid]
        return planned[done:]

    def mark_published(self, job_id: str, count: int) -> None:
        """Note that the first ``count`` planned tasks are published."""
        self.r.hset(self._key(job_id), "planned", count)

    def fail_job(self, job_id: str, task_id: str, error: str) -> bool:
        """End a job as ``failed`` with one line (its expansion ``task_id`` failed); once."""
        rec = self.task(job_id, task_id) or {"files": []}
        rec.update(state="failed", error=error)
        return bool(self._fail_job(
            keys=[self._key(job_id), self._key(job_id, "done"), self._key(job_id, "tasks")],
            args=[task_id, json.dumps(rec), error, time.time()],
        ))

    def delete(self, job_id: str) -> None:
        """Remove every key of a job (used when submission could not enqueue)."""
        keys = [self._key(job_id, p) for p in ("", "tasks", "done", "failures", "rate")]
        pipe = self.r.pipeline(transaction=True)
        pipe.delete(*keys)
        pipe.zrem("esrag:jobs", job_id)
        pipe.execute()

    def exists(self, job_id: str) -> bool:
        """True when the job is recorded."""
        return bool(self.r.exists(self._key(job_id)))

    def task(self, job_id: str, task_id: str) -> dict[str, Any] | None:
        """The task's record, or None."""
        raw = self.r.hget(self._key(job_id, "tasks"), task_id)
        return json.loads(raw) if raw else None

    def counted(self, job_id: str, task_id: str) -> bool:
        """True when the task's result has been counted."""
        return bool(self.r.sismember(self._key(job_id, "done"), task_id))

    def tasks(self, job_id: str) -> dict[str, dict[str, Any]]:
        """Every task of a job by id."""
        raw = self.r.hgetall(self._key(job_id, "tasks"))
        return {tid: json.loads(v) for tid, v in sorted(raw.items())}

    def task_states(self, job_id: str, queue: str | None = None) -> dict[str, str]:
        """Each task's state as shown: a ``running`` task whose lease has expired (its
        worker is gone and no live worker has reclaimed it yet) shows as ``stalled``."""
        tasks = self.tasks(job_id)
        queue = queue or self.r.hget(self._key(job_id), "queue") or "ingest"
        states = {t: str(rec.get("state", "pending")) for t, rec in tasks.items()}
        running = [t for t, s in states.items() if s == "running"]
        if running:
            secs, micros = self.r.time()
            now = secs + micros / 1e6
            expiry = self.r.zmscore(lease_key(queue), [member(job_id, t) for t in running])
            for t, exp in zip(running, expiry, strict=True):
                if exp is None or float(exp) <= now:
                    states[t] = "stalled"
        return states

    def status(self, job_id: str) -> str | None:
        """The job's status, or None for an unknown job."""
        return self.r.hget(self._key(job_id), "status")

    def mark_started(self, job_id: str, task_id: str, worker: str) -> int:
        """Note that a worker picked the task up; return its attempt number. A task whose
        result is counted stays as it is (workers take the task's lease instead: leases.py)."""
        rec = self.task(job_id, task_id) or {"files": [], "attempts": 0}
        if self.counted(job_id, task_id):
            return int(rec.get("attempts", 0))
        rec.update(state="running", worker=worker, attempts=int(rec.get("attempts", 0)) + 1)
        queued = self.status(job_id) == "queued"
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(self._key(job_id, "tasks"), task_id, json.dumps(rec))
        pipe.hsetnx(self._key(job_id), "started", time.time())
        if queued:
            pipe.hset(self._key(job_id), "status", "running")
        pipe.execute()
        return int(rec["attempts"])

    def record_result(
        self, job_id: str, task_id: str, counters: dict[str, int], failures: dict[str, str],
        *, failed: bool = False, error: str | None = None,
    ) -> bool:
        """Count a finished task once; False when it had already been counted."""
        rec = self.task(job_id, task_id) or {"files": []}
        rec.update(state="failed" if failed else "done", error=error)
        pairs: list[Any] = []
        for name in COUNTERS:
            pairs += [name, int(counters.get(name, 0))]
        counted = self._record(
            keys=[self._key(job_id), self._key(job_id, "done"), self._key(job_id, "tasks"),
                  self._key(job_id, "failures")],
            args=[task_id, json.dumps(rec), "tasks_failed" if failed else "tasks_done",
                  len(COUNTERS), *pairs, json.dumps(failures or {}), time.time()],
        )
        if counted and counters.get("chunks"):
            self.r.rpush(self._key(job_id, "rate"), f"{time.time():.3f} {int(counters['chunks'])}")
        return bool(counted)

    def reopen_failed(self, job_id: str) -> list[tuple[str, list[str]]]:
        """Make a job's failures pending again; return the (task id, files) to enqueue.

        A failed task (nothing counted) is reset and runs again under its own id; the
        failed files of a finished task go into a new task, so what that task already
        counted is not counted twice.
        """
        failures = self.r.hgetall(self._key(job_id, "failures"))
        tasks = self.tasks(job_id)
        reopened: list[tuple[str, list[str]]] = []
        keep: set[str] = set()  # failed sources of a finished expansion: no task reruns them
        pipe = self.r.pipeline(transaction=True)
        extra = sum(1 for tid in tasks if "-r" in tid)
        status = "running"
        for tid, rec in tasks.items():
            if rec.get("state") == "failed":
                rec.update(state="pending", error=None, lost=0)
                pipe.hset(self._key(job_id, "tasks"), tid, json.dumps(rec))
                pipe.srem(self._key(job_id, "done"), tid)
                pipe.hincrby(self._key(job_id), "tasks_failed", -1)
                reopened.append((tid, rec["files"]))
                if is_expansion(tid) and not self.r.hexists(self._key(job_id), "planned"):
                    status = "expanding"  # expands again from the start
                continue
            if is_expansion(tid):
                keep.update(f for f in rec["files"] if f in failures)
                continue
            bad = [f for f in rec["files"] if f in failures]
            if bad:
                new_id = f"{job_id}-r{extra:04d}"
                extra += 1
                pipe.hset(self._key(job_id, "tasks"), new_id,
                          json.dumps({"files": bad, "state": "pending", "attempts": 0}))
                pipe.hincrby(self._key(job_id), "tasks_total", 1)
                reopened.append((new_id, bad))
        if reopened:
            cleared = [f for f in failures if f not in keep]
            if cleared:
                pipe.hdel(self._key(job_id, "failures"), *cleared)
            pipe.hset(self._key(job_id), mapping={"status": status, "finished": ""})
            pipe.hdel(self._key(job_id), "error")
        pipe.execute()
        return reopened

    def cancel(self, job_id: str) -> bool:
        """Mark a job canceled; tasks not yet started are skipped. False if already final."""
        status = self.status(job_id)
        if status is None or status in FINAL_STATES:
            return False
        self.r.hset(self._key(job_id), mapping={"status": "canceled", "finished": time.time()})
        return True

    def get(self, job_id: str) -> Job | None:
        """A snapshot of the job, or None."""
        raw = self.r.hgetall(self._key(job_id))
        if not raw:
            return None
        failures = self.r.hgetall(self._key(job_id, "failures"))

        def num(name: str) -> float | None:
            value = raw.get(name)
            return float(value) if value not in (None, "") else None

        running = stalled = 0
        if raw["status"] not in FINAL_STATES:
            states = list(self.task_states(job_id, raw.get("queue")).values())
            running, stalled = states.count("running"), states.count("stalled")
        return Job(
            id=job_id, status=raw["status"], index=raw.get("index", ""),
            created=float(raw["created"]), started=num("started"), finished=num("finished"),
            tasks_total=int(raw.get("tasks_total", 0)), tasks_done=int(raw.get("tasks_done", 0)),
            tasks_failed=int(raw.get("tasks_failed", 0)), files_total=int(raw.get("files_total", 0)),
            counters={c: int(raw.get(c, 0)) for c in COUNTERS},
            failures=[{"source": s, "error": e} for s, e in sorted(failures.items())],
            tasks_running=running, tasks_stalled=stalled, error=raw.get("error") or None,
        )

    def set_access(self, job_id: str, access: JobAccess) -> None:
        """Record who submitted the job, what its documents are stamped with, and the roots
        its files must still lie under when a worker opens them."""
        self.r.hset(self._key(job_id), "access", json.dumps(asdict(access)))

    def access(self, job_id: str) -> JobAccess | None:
        """The job's JobAccess (None for a job submitted from the command line)."""
        raw = self.r.hget(self._key(job_id), "access")
        return JobAccess(**json.loads(raw)) if raw else None

    def list(self, limit: int = 50) -> list[Job]:
        """The newest jobs first."""
        ids = self.r.zrevrange("esrag:jobs", 0, limit - 1)
        return [job for job in (self.get(i) for i in ids) if job is not None]

    def rate_samples(self, job_id: str) -> list[tuple[float, int]]:
        """(unix time, chunks) of each counted task, for the throughput chart."""
        out = []
        for item in self.r.lrange(self._key(job_id, "rate"), 0, -1):
            ts, n = item.split()
            out.append((float(ts), int(n)))
        return out

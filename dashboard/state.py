"""The dashboard's state: jobs, workers and queues, Elasticsearch, queries, Redis.

Every section is computed on its own and catches its own failure, reporting
``{"up": false, "error": "<one line>"}``, so the page stays useful while Elasticsearch or
Redis is down. Sections run in parallel threads; the slowest (Celery's broadcast
inspect, bounded by ``inspect_timeout``) sets the response time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import redis
from elasticsearch import Elasticsearch

from dashboard.vectors import estimate
from esrag import querylog
from esrag.errors import one_line
from esrag.es import make_client
from esrag.index import VECTOR_FIELD
from esrag.redact import redact
from esrag.settings import Settings
from esrag.workerprobe import WorkerProbe
from workers.jobstore import FINAL_STATES, Job, JobStore

MAX_JOBS = 12
MAX_INDICES = 25
CHART_BUCKETS = 30
# kombu's Redis transport keeps prioritised messages in "<queue>\x06\x16<step>" lists
PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")


def guarded(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run one section; its failure becomes ``{"up": False, "error": ...}``."""
    try:
        return {"up": True, **fn()}
    except Exception as exc:  # a section must never break the page
        return {"up": False, "error": redact(one_line(exc))}


def rate_series(samples: list[tuple[float, int]], start: float | None, end: float) -> list[list[float]]:
    """Chunks/s over time, as [seconds since start, chunks/s] per bucket, for the chart."""
    if not samples:
        return []
    t0 = min(start or samples[0][0], samples[0][0])
    span = max(end, samples[-1][0]) - t0
    width = max(span / CHART_BUCKETS, 1.0)
    n = min(CHART_BUCKETS, int(span // width) + 1)
    buckets = [0] * n
    for ts, chunks in samples:
        buckets[min(n - 1, int((ts - t0) // width))] += chunks
    return [[round((i + 1) * width, 1), round(c / width, 2)] for i, c in enumerate(buckets)]


class StateReader:
    """Reads the dashboard state for one Settings; keeps its clients between polls."""

    def __init__(self, settings: Settings, *, inspect_timeout: float = 1.0):
        self.settings = settings
        self.inspect_timeout = inspect_timeout
        self.redis = redis.Redis.from_url(settings.redis_url, decode_responses=True,
                                          socket_timeout=3, socket_connect_timeout=1)
        self.es: Elasticsearch = make_client(settings, timeout=3).options(max_retries=0)
        self.probe = WorkerProbe(settings.redis_url, inspect_timeout)
        self._inspect_lock = threading.Lock()
        self._workers_cache: tuple[float, dict[str, Any]] | None = None
        self._task_cache: dict[tuple[str, float | None, int], dict[str, int]] = {}
        self._pool = ThreadPoolExecutor(max_workers=5, thread_name_prefix="dashboard")

    def close(self) -> None:
        """Release the clients and threads."""
        self._pool.shutdown(wait=False)
        self.redis.close()
        self.es.close()
        self.probe.close()

    # ---- whole state -------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Every section, each with its own ``up`` flag."""
        started = time.time()
        futures = {
            "redis": self._pool.submit(guarded, self._redis_info),
            "jobs": self._pool.submit(guarded, self._jobs),
            "workers": self._pool.submit(guarded, self._workers),
            "elasticsearch": self._pool.submit(guarded, self._elasticsearch),
            "queries": self._pool.submit(guarded, self._queries),
        }
        out: dict[str, Any] = {name: f.result() for name, f in futures.items()}
        worker_queues = [q for w in out["workers"].get("workers", []) for q in w.get("queues", [])]
        out["queues"] = guarded(lambda: self._queues(worker_queues))
        out["time"] = started
        out["took_ms"] = round((time.time() - started) * 1000, 1)
        out["settings"] = {"index": self.settings.index, "queue": self.settings.queue,
                           "es_url": self.settings.safe_es_url, "redis_url": self.settings.safe_redis_url}
        return out

    # ---- sections ------------------------------------------------------------------
    def _redis_info(self) -> dict[str, Any]:
        info = self.redis.info()
        return {"version": info.get("redis_version"), "used_memory": info.get("used_memory"),
                "clients": info.get("connected_clients"), "uptime_s": info.get("uptime_in_seconds"),
                "aof": bool(info.get("aof_enabled"))}

    def _task_stats(self, store: JobStore, job: Job) -> dict[str, int]:
        key = (job.id, job.finished, job.tasks_total)
        cached = self._task_cache.get(key)
        if cached is not None:
            return cached
        tasks = store.tasks(job.id).values()
        stats = {"tasks_retried": sum(max(int(t.get("attempts", 0)) - 1, 0) for t in tasks)}
        if job.status in FINAL_STATES:
            self._task_cache[key] = stats
        return stats

    def _jobs(self) -> dict[str, Any]:
        store = JobStore(self.redis)
        now = time.time()
        jobs = []
        hour = {"jobs": 0, "tasks_retried": 0, "tasks_failed": 0, "files_failed": 0}
        for job in store.list(MAX_JOBS):
            d = job.to_dict()
            d.update(self._task_stats(store, job))
            d["files_failed"] = len(job.failures)
            d["rate"] = rate_series(store.rate_samples(job.id), job.started, job.finished or now)
            elapsed = ((job.finished or now) - job.started) if job.started else 0.0
            d["docs_per_s"] = round(job.counters["documents"] / elapsed, 2) if elapsed > 0 else 0.0
            d["final"] = job.status in FINAL_STATES
            jobs.append(d)
            if not d["final"] or (job.finished or 0) >= now - 3600 or job.created >= now - 3600:
                hour["jobs"] += 1
                hour["tasks_retried"] += d["tasks_retried"]
                hour["tasks_failed"] += job.tasks_failed
                hour["files_failed"] += d["files_failed"]
        return {"jobs": jobs, "total": int(self.redis.zcard("esrag:jobs")), "last_hour": hour}

    def _workers(self) -> dict[str, Any]:
        with self._inspect_lock:
            cached = self._workers_cache
            if cached is not None and time.monotonic() - cached[0] < 1.5:
                return cached[1]
            self.redis.ping()  # a down broker would make Celery retry; fail fast instead
            stats = self.probe.stats()
            names = sorted(stats)
            active, queues = self.probe.details(names)
            now = time.time()
            workers = []
            for name in names:
                s = stats[name]
                tasks = []
                for t in active.get(name) or []:
                    args = t.get("args") or []
                    files = args[2] if len(args) > 2 and isinstance(args[2], list) else []
                    started = t.get("time_start")
                    tasks.append({"id": t.get("id"), "name": t.get("name"),
                                  "job": args[0] if args else None, "files": len(files),
                                  "file": files[0] if files else None,
                                  "runtime_s": round(now - started, 1) if started else None})
                workers.append({
                    "name": name, "pid": s.get("pid"), "uptime_s": s.get("uptime"),
                    "concurrency": (s.get("pool") or {}).get("max-concurrency"),
                    "processed": sum((s.get("total") or {}).values()),
                    "queues": sorted(q.get("name") for q in queues.get(name) or [] if q.get("name")),
                    "active": tasks,
                })
            result = {"workers": workers}
            self._workers_cache = (time.monotonic(), result)
            return result

    def _queues(self, worker_queues: list[str]) -> dict[str, Any]:
        names = sorted({self.settings.queue, *worker_queues})
        pipe = self.redis.pipeline(transaction=False)
        for name in names:
            for suffix in PRIORITY_SUFFIXES:
                pipe.llen(name + suffix)
        pipe.hlen("unacked")
        counts = pipe.execute()
        per = len(PRIORITY_SUFFIXES)
        queues = [{"name": name, "ready": sum(counts[i * per:(i + 1) * per])} for i, name in enumerate(names)]
        return {"queues": queues, "unacked": counts[-1]}

    def _queries(self) -> dict[str, Any]:
        return querylog.summary(self.redis, window_s=300)

    def _elasticsearch(self) -> dict[str, Any]:
        es = self.es
        health = dict(es.cluster.health())
        nodes = [dict(n) for n in es.cat.nodes(
            format="json", h="name,ip,version,node.role,master,heap.percent,ram.percent,cpu,load_1m,"
                             "disk.used_percent")]
        return {
            "url": self.settings.safe_es_url,
            "health": {k: health.get(k) for k in (
                "cluster_name", "status", "number_of_nodes", "active_shards", "relocating_shards",
                "initializing_shards", "unassigned_shards", "active_shards_percent_as_number")},
            "nodes": nodes,
            **self._indices(),
        }

    def _indices(self) -> dict[str, Any]:
        es = self.es
        mappings = es.indices.get_mapping(
            index="*", filter_path=f"*.mappings._meta.esrag,*.mappings.properties.{VECTOR_FIELD}")
        esrag = {name: m["mappings"] for name, m in dict(mappings).items()
                 if m.get("mappings", {}).get("_meta", {}).get("esrag")}
        if not esrag:
            return {"indices": [], "indices_total": 0}
        aliases = {name: sorted(v.get("aliases", {})) for name, v in dict(
            es.indices.get_alias(index=",".join(esrag))).items()}
        ordered = sorted(esrag, key=lambda n: (self.settings.index not in aliases.get(n, []), n))
        names = ordered[:MAX_INDICES]
        joined = ",".join(names)
        stats = dict(es.indices.stats(index=joined, metric="docs,store,segments,dense_vector"))["indices"]
        cat = {row["index"]: row for row in es.cat.indices(index=joined, format="json",
                                                         h="index,health,status,pri,rep")}
        refresh = dict(es.indices.get_settings(index=joined, name="index.refresh_interval",
                                               include_defaults=True, flat_settings=True))
        rows = []
        for name in names:
            meta = esrag[name]["_meta"]["esrag"]
            field = esrag[name].get("properties", {}).get(VECTOR_FIELD, {})
            opts = field.get("index_options") or {}
            kind = opts.get("type") or meta.get("vector_index_type") or "hnsw"
            dims = int(field.get("dims") or meta.get("dims") or 0)
            prim = stats.get(name, {}).get("primaries", {})
            total = stats.get(name, {}).get("total", {})
            vectors = int(prim.get("dense_vector", {}).get("value_count", 0))
            ri = refresh.get(name, {})
            rows.append({
                "name": name, "aliases": aliases.get(name, []),
                "health": cat.get(name, {}).get("health"), "status": cat.get(name, {}).get("status"),
                "shards": cat.get(name, {}).get("pri"), "replicas": cat.get(name, {}).get("rep"),
                "docs": int(prim.get("docs", {}).get("count", 0)),
                "deleted_docs": int(prim.get("docs", {}).get("deleted", 0)),
                "store_bytes": int(total.get("store", {}).get("size_in_bytes", 0)),
                "segments": int(prim.get("segments", {}).get("count", 0)),
                "vectors": vectors, "model": meta.get("model"),
                "refresh_interval": (ri.get("settings") or {}).get("index.refresh_interval")
                or (ri.get("defaults") or {}).get("index.refresh_interval"),
                "vector_memory": estimate(kind, dims, vectors, int(opts.get("m") or 16)),
            })
        return {"indices": rows, "indices_total": len(esrag)}

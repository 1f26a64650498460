"""Status of the services esrag depends on, and the background worker `esrag up` starts."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from esrag import localredis, pidfile
from esrag.settings import Settings


def es_report(settings: Settings) -> dict[str, Any]:
    """Health, version and node count of the configured Elasticsearch.

    Two plain GETs (esrag/eshttp.py): status does not import the Elasticsearch client.
    """
    from esrag.eshttp import EsHttpError, get_json

    report: dict[str, Any] = {"url": settings.safe_es_url, "up": False}
    try:
        health, nodes = get_json(settings, ["/_cluster/health",
                                            "/_nodes?filter_path=nodes.*.version,nodes.*.name"])
        versions = sorted({n["version"] for n in nodes.get("nodes", {}).values()})
        names = sorted(n["name"] for n in nodes.get("nodes", {}).values())
        report.update(
            up=True,
            status=health["status"],
            nodes=health["number_of_nodes"],
            cluster=health["cluster_name"],
            version=",".join(versions),
            node_names=names,
        )
    except EsHttpError as exc:
        report["error"] = str(exc)
    except (KeyError, TypeError, AttributeError) as exc:  # an answer without the fields of a cluster
        report["error"] = f"unexpected answer ({type(exc).__name__})"
    return report


def workers_report(settings: Settings) -> list[dict[str, Any]]:
    """The workers that announced themselves on the broker's Redis (esrag/workerlist.py):
    name, pid, pool size and queues; none when Redis does not answer."""
    import redis

    from esrag import workerlist

    client = redis.Redis.from_url(settings.redis_url, socket_timeout=1.0, socket_connect_timeout=1.0)
    try:
        rows = workerlist.online(client)
    except (redis.RedisError, OSError):
        return []
    finally:
        client.close()
    return [{"name": r["name"], "concurrency": r.get("concurrency"), "pid": r.get("pid"),
             "queues": r.get("queues", [])} for r in rows]


def status_report(settings: Settings) -> dict[str, Any]:
    """The report behind `esrag status --json`."""
    return {
        "elasticsearch": es_report(settings),
        "redis": {"url": settings.safe_redis_url, "up": localredis.ping(settings.redis_url)},
        "workers": workers_report(settings),
    }


WORKER_MARKER = b"esrag.cli\0worker"  # in the command line of the worker `esrag up --worker` starts


def read_worker_pid(settings: Settings) -> int | None:
    """The pid of the background worker `esrag up --worker` started, or None.

    worker.pid holds "PID START_TIME"; the pid counts only while a process with that pid
    and start time runs `esrag worker` (esrag/pidfile.py).
    """
    return pidfile.read_pid(settings.state_dir / "worker.pid", WORKER_MARKER)


def start_background_worker(settings: Settings) -> str:
    """Start `esrag worker` detached, logging to state_dir/worker.log."""
    path = settings.state_dir / "worker.pid"
    running = read_worker_pid(settings)
    if running is not None:
        return f"worker already running (pid {running})"
    path.unlink(missing_ok=True)
    log = open(settings.state_dir / "worker.log", "ab")  # noqa: SIM115 (owned by the child)
    proc = subprocess.Popen(
        [sys.executable, "-m", "esrag.cli", "worker"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
    )
    pidfile.await_exec(proc.pid, WORKER_MARKER)
    pidfile.write_pid(path, proc.pid)
    return f"worker started (pid {proc.pid}, log {settings.state_dir / 'worker.log'})"


def stop_background_worker(settings: Settings) -> str:
    """Stop the worker `esrag up --worker` started (warm shutdown, then SIGKILL after 30 s).

    A pid in worker.pid that is not that worker (see read_worker_pid) is left alone.
    """
    path = settings.state_dir / "worker.pid"
    if not path.exists():
        return "no background worker"
    pid = read_worker_pid(settings)
    if pid is None:
        path.unlink(missing_ok=True)
        return "no background worker (worker.pid was stale; its pid is not the worker esrag started)"
    pidfile.terminate(pid, lambda: read_worker_pid(settings) is not None, timeout=30.0)
    path.unlink(missing_ok=True)
    return "worker stopped"

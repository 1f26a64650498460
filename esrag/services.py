"""Status of the services esrag depends on, and the background worker `esrag up` starts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from esrag import localredis
from esrag.settings import Settings


def es_report(settings: Settings) -> dict[str, Any]:
    """Health, version and node count of the configured Elasticsearch."""
    from esrag.es import make_client  # here, not at the top: `esrag down` needs no Elasticsearch client

    report: dict[str, Any] = {"url": settings.safe_es_url, "up": False}
    client = make_client(settings, timeout=5)
    try:
        health = client.options(max_retries=0).cluster.health()
        nodes = client.options(max_retries=0).nodes.info(filter_path="nodes.*.version,nodes.*.name")
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
    except Exception as exc:  # any transport or API failure means "down" here
        report["error"] = type(exc).__name__
    finally:
        client.close()
    return report


def workers_report(settings: Settings, timeout: float = 1.0) -> list[dict[str, Any]]:
    """Celery workers answering on the broker, with their pool size."""
    if not localredis.ping(settings.redis_url):
        return []
    from celery import Celery

    probe = Celery(broker=settings.redis_url)
    try:
        stats = probe.control.inspect(timeout=timeout).stats() or {}
    except Exception:
        return []
    finally:
        probe.close()
    return [
        {"name": name, "concurrency": s.get("pool", {}).get("max-concurrency"), "pid": s.get("pid")}
        for name, s in sorted(stats.items())
    ]


def status_report(settings: Settings) -> dict[str, Any]:
    """The report behind `esrag status --json`."""
    return {
        "elasticsearch": es_report(settings),
        "redis": {"url": settings.safe_redis_url, "up": localredis.ping(settings.redis_url)},
        "workers": workers_report(settings),
    }


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()  # the command name may hold spaces and parentheses
    return fields[19] if len(fields) > 19 else None


def _is_worker(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"esrag.cli\0worker" in cmdline  # empty for a zombie


def read_worker_pid(settings: Settings) -> int | None:
    """The pid of the background worker `esrag up --worker` started, or None.

    worker.pid holds "PID START_TIME"; the pid counts only while a process with that pid
    and start time runs `esrag worker`: after a crash or a reboot the pid may be another
    program's by now, and that one must be neither signalled nor taken for the worker.
    """
    try:
        pid_text, _, started = (settings.state_dir / "worker.pid").read_text().strip().partition(" ")
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    if started and _start_time(pid) != started:
        return None
    return pid if _is_worker(pid) else None


def start_background_worker(settings: Settings) -> str:
    """Start `esrag worker` detached, logging to state_dir/worker.log."""
    pidfile = settings.state_dir / "worker.pid"
    running = read_worker_pid(settings)
    if running is not None:
        return f"worker already running (pid {running})"
    pidfile.unlink(missing_ok=True)
    log = open(settings.state_dir / "worker.log", "ab")  # noqa: SIM115 (owned by the child)
    proc = subprocess.Popen(
        [sys.executable, "-m", "esrag.cli", "worker"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
    )
    pidfile.write_text(f"{proc.pid} {_start_time(proc.pid) or ''}".strip())
    return f"worker started (pid {proc.pid}, log {settings.state_dir / 'worker.log'})"


def stop_background_worker(settings: Settings) -> str:
    """Stop the worker `esrag up --worker` started (warm shutdown, then SIGKILL after 30 s).

    A pid in worker.pid that is not that worker (see read_worker_pid) is left alone.
    """
    pidfile = settings.state_dir / "worker.pid"
    if not pidfile.exists():
        return "no background worker"
    pid = read_worker_pid(settings)
    if pid is None:
        pidfile.unlink(missing_ok=True)
        return "no background worker (worker.pid was stale; its pid is not the worker esrag started)"
    try:
        os.kill(pid, signal.SIGTERM)
        for _ in range(300):
            if read_worker_pid(settings) is None:
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    pidfile.unlink(missing_ok=True)
    return "worker stopped"

"""A local Redis (Debian's redis-server) with AOF persistence, for the broker and job store."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from esrag import pidfile
from esrag.errors import EsragError, ServiceUnavailable
from esrag.settings import Settings


def redis_dir(settings: Settings) -> Path:
    """Folder holding the local Redis's AOF files, pidfile and log."""
    return settings.state_dir / "redis"


def _pidfile(settings: Settings) -> Path:
    return redis_dir(settings) / "redis.pid"


def ping(url: str, timeout: float = 1.0) -> bool:
    """True when a Redis answers PING at ``url``."""
    import redis  # here, not at the top: `esrag down` stops Redis by its pid, without the client

    try:
        client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False


def _redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        proc = subprocess.run(
            ["apt-get", "install", "-y", "-q", "redis-server"],
            capture_output=True, text=True, timeout=900,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
        found = shutil.which("redis-server")
        if proc.returncode == 0 and found:
            return found
    raise EsragError("redis-server is not installed: apt-get install redis-server")


def start(settings: Settings) -> str:
    """Start Redis on redis_url's port with appendonly on; one line for the user."""
    if ping(settings.redis_url):
        return f"Redis already answering at {settings.safe_redis_url}"
    binary = _redis_server_binary()
    folder = redis_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "redis.log"
    args = [
        binary, "--port", str(settings.redis_port), "--bind", "127.0.0.1",
        "--dir", str(folder), "--appendonly", "yes", "--appendfsync", "everysec",
        "--daemonize", "yes", "--pidfile", str(_pidfile(settings)), "--logfile", str(log),
        "--save", "", "--protected-mode", "yes",
    ]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        raise ServiceUnavailable(f"redis-server failed to start (exit {proc.returncode}); see {log}")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if ping(settings.redis_url):
            return f"Redis started on {settings.safe_redis_url} (AOF on, data in {folder})"
        time.sleep(0.2)
    raise ServiceUnavailable(f"Redis did not answer within 20s; see {log}")


def read_pid(settings: Settings) -> int | None:
    """The pid of the Redis esrag started, or None (a stale pid may be another program's)."""
    return pidfile.read_pid(_pidfile(settings), b"redis-server")


def stop(settings: Settings) -> str:
    """Stop the Redis esrag started (it rewrites nothing: the AOF is already on disk)."""
    pid = read_pid(settings)
    if pid is None:
        return "Redis (started by esrag) was not running"
    if pidfile.terminate(pid, lambda: read_pid(settings) is not None, timeout=10.0):
        return "Redis stopped"
    return "Redis killed after 10s"

"""Pidfiles of the processes esrag starts (the worker, Redis, Elasticsearch nodes), and stopping them.

A pidfile holds ``PID`` or ``PID START_TIME``. After a crash or a reboot its pid may be
another program's by now, so a pid counts only while that process's command line still
holds the expected marker (and, where the file has one, the same start time): another
program is neither signalled nor taken for ours.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()  # the command name may hold spaces and parentheses
    return fields[19] if len(fields) > 19 else None


def runs(pid: int, marker: bytes) -> bool:
    """True while process ``pid`` runs a command line that contains ``marker`` (a zombie's is empty)."""
    try:
        return marker in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def await_exec(pid: int, marker: bytes, timeout: float = 5.0) -> bool:
    """Wait until a just-started ``pid`` shows ``marker`` in its command line; False if it never does.

    ``subprocess.Popen`` returns while the kernel may still be setting up the new program,
    when /proc/PID/cmdline reads empty: a pid checked at once could pass for a stale one.
    """
    deadline = time.monotonic() + timeout
    while not runs(pid, marker):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True


def write_pid(path: Path, pid: int) -> None:
    """Record ``pid`` with its start time in ``path``."""
    path.write_text(f"{pid} {start_time(pid) or ''}".strip())


def read_pid(path: Path, marker: bytes) -> int | None:
    """The pid in ``path`` while it is still the process that wrote it (see the module doc), or None."""
    try:
        pid_text, _, started = path.read_text().strip().partition(" ")
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    if started and start_time(pid) != started:
        return None
    return pid if runs(pid, marker) else None


def terminate(pid: int, alive: Callable[[], bool], timeout: float, *, poll: float = 0.1) -> bool:
    """SIGTERM ``pid``, wait up to ``timeout`` s until ``alive()`` is False, then SIGKILL it.

    True when it stopped within the timeout; False when it had to be killed. A process
    that is already gone counts as stopped.
    """
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout
    while alive():
        if time.monotonic() >= deadline:
            kill(pid)
            return False
        time.sleep(poll)
    return True


def kill(pid: int) -> None:
    """SIGKILL ``pid``; a process that is already gone is fine."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)

"""esrag/pidfile.py with real processes: whose pid counts, and how one is stopped."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from esrag import pidfile

STUBBORN = ("import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('ready', flush=True); time.sleep(120)")


@pytest.fixture()
def sleeper() -> Iterator[subprocess.Popen]:
    with subprocess.Popen(["sleep", "120"]) as proc:  # waited for on exit
        yield proc
        proc.kill()


def test_a_pid_counts_only_while_its_process_runs_the_marker(
    tmp_path: Path, sleeper: subprocess.Popen
) -> None:
    path = tmp_path / "x.pid"
    pidfile.write_pid(path, sleeper.pid)
    started = pidfile.start_time(sleeper.pid)
    assert started is not None and path.read_text() == f"{sleeper.pid} {started}"
    assert pidfile.read_pid(path, b"sleep") == sleeper.pid
    assert pidfile.read_pid(path, b"redis-server") is None  # another program's pid
    path.write_text(f"{sleeper.pid} 1")  # same pid, another start time: a reused pid
    assert pidfile.read_pid(path, b"sleep") is None
    path.write_text(f"{sleeper.pid}\n")  # as daemons write it: no start time to compare
    assert pidfile.read_pid(path, b"sleep") == sleeper.pid
    path.write_text("not a pid")
    assert pidfile.read_pid(path, b"sleep") is None
    assert pidfile.read_pid(tmp_path / "missing.pid", b"sleep") is None
    sleeper.kill()
    sleeper.wait(timeout=10)
    assert pidfile.read_pid(tmp_path / "x.pid", b"sleep") is None


@pytest.mark.timeout(60)
def test_terminate_stops_a_polite_process_and_kills_a_stubborn_one(sleeper: subprocess.Popen) -> None:
    assert pidfile.terminate(sleeper.pid, lambda: sleeper.poll() is None, timeout=20) is True
    assert sleeper.returncode == -15
    stubborn = subprocess.Popen([sys.executable, "-c", STUBBORN], stdout=subprocess.PIPE, text=True)
    try:
        assert stubborn.stdout is not None and stubborn.stdout.readline() == "ready\n"
        assert pidfile.terminate(stubborn.pid, lambda: stubborn.poll() is None, timeout=0.5) is False
        assert stubborn.wait(timeout=10) == -9
    finally:
        stubborn.kill()
        stubborn.wait(timeout=10)
    assert pidfile.terminate(stubborn.pid, lambda: False, timeout=1) is True  # already gone


def test_a_just_started_process_is_recognised_once_await_exec_returns(tmp_path: Path) -> None:
    """Right after Popen returns, /proc/PID/cmdline can still read empty (seen here 5 times in
    30 starts): ``await_exec`` is what lets `esrag up --worker` record a pid that counts at once."""
    for _ in range(20):
        proc = subprocess.Popen(["sleep", "30"])
        try:
            assert pidfile.await_exec(proc.pid, b"sleep\x0030") is True
            pidfile.write_pid(tmp_path / "s.pid", proc.pid)
            assert pidfile.read_pid(tmp_path / "s.pid", b"sleep") == proc.pid
        finally:
            proc.kill()
            proc.wait(timeout=10)
    assert pidfile.await_exec(proc.pid, b"sleep", timeout=0.2) is False  # gone

"""`esrag up --worker` / `esrag down` trust worker.pid only for the worker they started.

Real processes: an unrelated program whose pid sits in worker.pid (as after a crash and
a reboot) is neither signalled nor taken for the worker; the real worker is started and
stopped. The worker runs on the shared Redis with a queue of its own.
"""

from __future__ import annotations

import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from esrag import services
from esrag.settings import Settings, load_settings
from esrag.workerprobe import WorkerProbe


@pytest.fixture()
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    monkeypatch.setenv("ESRAG_QUEUE", f"test-{uuid.uuid4().hex[:8]}")
    monkeypatch.setenv("ESRAG_STATE_DIR", str(tmp_path))
    settings = load_settings()
    yield settings
    pid = services.read_worker_pid(settings)
    if pid is not None:
        services.stop_background_worker(settings)


@pytest.fixture()
def bystander() -> Iterator[subprocess.Popen]:
    proc = subprocess.Popen(["sleep", "300"])
    yield proc
    proc.kill()
    proc.wait(timeout=10)


def test_down_leaves_a_stranger_in_worker_pid_alone(state: Settings, bystander: subprocess.Popen) -> None:
    (state.state_dir / "worker.pid").write_text(str(bystander.pid))
    assert services.read_worker_pid(state) is None
    assert services.stop_background_worker(state) == (
        "no background worker (worker.pid was stale; its pid is not the worker esrag started)")
    time.sleep(0.5)
    assert bystander.poll() is None  # still running: not signalled
    assert not (state.state_dir / "worker.pid").exists()


@pytest.mark.timeout(120)
def test_up_starts_the_worker_despite_a_stale_pid_and_down_stops_it(
    state: Settings, bystander: subprocess.Popen
) -> None:
    (state.state_dir / "worker.pid").write_text(f"{bystander.pid} 1")
    message = services.start_background_worker(state)
    assert message.startswith("worker started (pid ")
    pid = services.read_worker_pid(state)
    assert pid is not None and pid != bystander.pid
    assert services.start_background_worker(state) == f"worker already running (pid {pid})"
    # the recorded start time must match: the same pid with another start time is not ours
    text = (state.state_dir / "worker.pid").read_text()
    (state.state_dir / "worker.pid").write_text(f"{pid} 1")
    assert services.read_worker_pid(state) is None
    (state.state_dir / "worker.pid").write_text(text)
    # it announces itself in Redis (esrag/workerlist.py: `esrag status`), and the worker probe
    # (esrag/workerprobe.py: ingest's routing, the dashboard) sees it
    deadline = time.monotonic() + 90
    while not any(w["pid"] == pid for w in services.workers_report(state)) and time.monotonic() < deadline:
        time.sleep(0.5)
    (mine,) = [w for w in services.workers_report(state) if w["pid"] == pid]
    assert (mine["concurrency"], mine["queues"]) == (1, [state.queue])
    assert mine["name"].startswith("esrag-")
    with WorkerProbe(state.redis_url) as probe:
        assert probe.consumes(state.queue) is True
        assert probe.consumes(f"{state.queue}-nobody") is False
    assert services.stop_background_worker(state) == "worker stopped"
    assert not Path(f"/proc/{pid}/cmdline").exists() or Path(f"/proc/{pid}/cmdline").read_bytes() == b""
    assert bystander.poll() is None
    with WorkerProbe(state.redis_url) as probe:
        assert probe.consumes(state.queue) is False
    # a warm shutdown withdraws the announcement at once (no waiting for it to expire)
    assert [w for w in services.workers_report(state) if w["pid"] == pid] == []


@pytest.mark.timeout(60)  # a probe that retried the broker connection would hang here
def test_the_probe_fails_fast_without_a_broker(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    down = load_settings(redis_url=f"redis://127.0.0.1:{port}/0", state_dir=str(tmp_path))
    assert services.workers_report(down) == []
    with WorkerProbe(down.redis_url) as probe:
        assert probe.consumes(down.queue) is False
        with pytest.raises(Exception, match="Connection refused|Error 111"):
            probe.stats()

"""Task leases in the real Redis job store: one holder, stalled view, reclaim, poison bound."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from esrag.settings import load_settings
from workers.jobstore import JobStore, lease_key
from workers.leases import Leases, Reaper


@pytest.fixture()
def queue() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


@pytest.fixture()
def store(queue: str) -> Iterator[JobStore]:
    s = JobStore.from_url(load_settings().redis_url)
    before = set(s.r.zrange("esrag:jobs", 0, -1))
    yield s
    for job_id in set(s.r.zrange("esrag:jobs", 0, -1)) - before:
        if s.r.hget(f"esrag:job:{job_id}", "queue") == queue:
            s.delete(job_id)
    s.r.delete(lease_key(queue))


def _reaper(leases: Leases, published: list[tuple[str, str, list[str], str]]) -> Reaper:
    return Reaper(leases, interval=60, max_attempts=3, soft_limit=2700,
                  publish=lambda *args: published.append(args))


def test_one_run_holds_a_task_and_a_counted_task_never_runs_again(store: JobStore, queue: str) -> None:
    job_id, (t0,) = store.create("idx", [["/a"]], queue=queue)
    leases = Leases(store, queue)
    verdict, token = leases.acquire(job_id, t0, "w1", 30)
    assert verdict == "ok" and token
    assert leases.acquire(job_id, t0, "w2", 30) == ("held", None)
    assert store.task_states(job_id) == {t0: "running"}
    assert store.get(job_id).tasks_running == 1
    store.record_result(job_id, t0, {"documents": 1, "chunks": 4}, {})
    assert leases.release(job_id, t0, token) is True
    # a redelivered message (visibility timeout, --requeue) finds the result counted: no
    # second run and no phantom "running" task
    assert leases.acquire(job_id, t0, "w2", 30) == ("counted", None)
    assert store.task(job_id, t0)["state"] == "done"
    assert store.task(job_id, t0)["attempts"] == 1
    assert store.get(job_id).status == "completed"


def test_expired_lease_shows_stalled_then_is_published_again(store: JobStore, queue: str) -> None:
    job_id, (t0, t1) = store.create("idx", [["/a"], ["/b"]], queue=queue)
    leases = Leases(store, queue)
    _, token = leases.acquire(job_id, t0, "w1", 30)
    leases.acquire(job_id, t1, "w2", 30)
    assert token is not None
    # the run's worker is gone: its lease lapses (forced here instead of waiting 30 s)
    store.r.zadd(lease_key(queue), {f"{job_id} {t0}": 0})
    assert store.task_states(job_id) == {t0: "stalled", t1: "running"}
    job = store.get(job_id)
    assert (job.tasks_running, job.tasks_stalled) == (1, 1)
    assert job.to_dict()["eta_s"] is None
    published: list[tuple[str, str, list[str], str]] = []
    assert _reaper(leases, published).reap() == [(job_id, t0, "requeue")]
    assert published == [(job_id, t0, ["/a"], "idx")]
    assert store.task(job_id, t0)["state"] == "stalled" and store.task(job_id, t0)["lost"] == 1
    # a second reaper finds nothing left to reclaim
    assert _reaper(leases, published).reap() == []
    assert leases.renew(job_id, t0, token, 30) is False  # the lost run cannot take it back
    verdict, _ = leases.acquire(job_id, t0, "w2", 30)
    assert verdict == "ok"
    rec = store.task(job_id, t0)
    assert (rec["state"], rec["attempts"], rec["worker"]) == ("running", 2, "w2")


def test_third_loss_fails_the_files_with_one_line(store: JobStore, queue: str) -> None:
    job_id, (t0, t1) = store.create("idx", [["/poison", "/other"], ["/ok"]], queue=queue)
    leases = Leases(store, queue)
    published: list[tuple[str, str, list[str], str]] = []
    reaper = _reaper(leases, published)
    for attempt in range(1, 4):
        verdict, token = leases.acquire(job_id, t0, f"w{attempt}", 30)
        assert verdict == "ok"
        store.r.zadd(lease_key(queue), {f"{job_id} {t0}": 0})
        assert reaper.reap() == [(job_id, t0, "requeue" if attempt < 3 else "poison")]
    assert len(published) == 2
    store.record_result(job_id, t1, {"documents": 1, "chunks": 2}, {})
    job = store.get(job_id)
    assert job.status == "completed_with_failures"
    assert job.failures == [
        {"source": "/other", "error": "worker died while processing this file (3 attempts)"},
        {"source": "/poison", "error": "worker died while processing this file (3 attempts)"},
    ]
    assert (job.tasks_done, job.tasks_failed) == (1, 1)
    # an operator's --retry-failed gives the task fresh attempts
    store.reopen_failed(job_id)
    assert store.task(job_id, t0)["lost"] == 0


def test_third_loss_of_an_expansion_fails_the_job_with_one_line(store: JobStore, queue: str) -> None:
    from workers.jobstore import ExpandPlan

    plan = ExpandPlan(max_files=10, task_max_files=1, task_max_bytes=1 << 20)
    job_id, expand = store.create_expanding("idx", ["/huge"], plan, queue=queue)
    leases = Leases(store, queue)
    published: list[tuple[str, str, list[str], str]] = []
    reaper = _reaper(leases, published)
    for attempt in range(1, 4):
        assert leases.acquire(job_id, expand, f"w{attempt}", 30)[0] == "ok"
        store.r.zadd(lease_key(queue), {f"{job_id} {expand}": 0})
        assert reaper.reap() == [(job_id, expand, "requeue" if attempt < 3 else "poison")]
    assert published == [(job_id, expand, ["/huge"], "idx")] * 2
    job = store.get(job_id)
    assert (job.status, job.error, job.failures, job.tasks_failed) == (
        "failed", "worker died while expanding the job's paths (3 attempts)", [], 1)


def test_timed_out_run_is_reported_as_a_timeout(store: JobStore, queue: str) -> None:
    job_id, (t0,) = store.create("idx", [["/slow"]], queue=queue)
    leases = Leases(store, queue)
    reaper = Reaper(leases, interval=60, max_attempts=1, soft_limit=2700, publish=lambda *a: None)
    _, token = leases.acquire(job_id, t0, "w1", 30)
    assert token is not None
    assert leases.expire(job_id, t0, token, "timeout") is True
    assert reaper.reap() == [(job_id, t0, "poison")]
    assert store.get(job_id).failures == [
        {"source": "/slow", "error": "task timed out after 2700 s while processing this file (1 attempt)"}]


def test_retrying_run_gives_its_lease_back(store: JobStore, queue: str) -> None:
    job_id, (t0,) = store.create("idx", [["/a"]], queue=queue)
    leases = Leases(store, queue)
    _, token = leases.acquire(job_id, t0, "w1", 30)
    assert token is not None
    assert leases.release(job_id, t0, token, state="retrying") is True
    assert store.task_states(job_id) == {t0: "retrying"}
    assert leases.acquire(job_id, t0, "w1", 30)[0] == "ok"


def test_failed_publish_leaves_the_lease_for_the_next_round(store: JobStore, queue: str) -> None:
    job_id, (t0,) = store.create("idx", [["/a"]], queue=queue)
    leases = Leases(store, queue)
    leases.acquire(job_id, t0, "w1", 30)
    store.r.zadd(lease_key(queue), {f"{job_id} {t0}": 0})

    def broken(*_: object) -> None:
        raise ConnectionError("broker down")

    with pytest.raises(ConnectionError):
        Reaper(leases, interval=60, max_attempts=3, soft_limit=2700, publish=broken).reap()
    assert store.task(job_id, t0)["lost"] == 0
    published: list[tuple[str, str, list[str], str]] = []
    assert _reaper(leases, published).reap() == [(job_id, t0, "requeue")]
    assert published == [(job_id, t0, ["/a"], "idx")]
    assert store.task(job_id, t0)["lost"] == 1

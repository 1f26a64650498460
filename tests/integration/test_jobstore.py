"""The Redis job store: exactly-once counting, failures, retry bookkeeping, cancel."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from esrag.settings import load_settings
from workers.jobstore import JobStore
from workers.submit import plan_tasks


@pytest.fixture()
def store() -> Iterator[JobStore]:
    s = JobStore.from_url(load_settings().redis_url)
    created: list[str] = []
    original = s.create

    def tracking_create(index: str, tasks: list[list[str]]) -> tuple[str, list[str]]:
        job_id, ids = original(index, tasks)
        created.append(job_id)
        return job_id, ids

    s.create = tracking_create  # type: ignore[method-assign]
    yield s
    for job_id in created:
        s.delete(job_id)


def test_result_is_counted_once(store: JobStore) -> None:
    job_id, (t0, t1) = store.create("idx", [["/a", "/b"], ["/c"]])
    assert store.get(job_id).status == "queued"
    store.mark_started(job_id, t0, "w1")
    assert store.get(job_id).status == "running"
    assert store.record_result(job_id, t0, {"documents": 2, "chunks": 5, "indexed": 5}, {}) is True
    # a redelivered task finishing again changes nothing
    assert store.record_result(job_id, t0, {"documents": 2, "chunks": 5, "indexed": 5}, {}) is False
    job = store.get(job_id)
    assert (job.tasks_done, job.counters["chunks"], job.status) == (1, 5, "running")
    assert store.record_result(job_id, t1, {"documents": 1, "chunks": 2, "indexed": 2}, {}) is True
    job = store.get(job_id)
    assert job.status == "completed"
    assert job.counters["chunks"] == 7 and job.counters["documents"] == 3
    assert job.finished is not None and job.progress == 1.0


def test_failures_and_retry_failed(store: JobStore) -> None:
    job_id, (t0, t1) = store.create("idx", [["/a", "/bad"], ["/c"]])
    store.record_result(job_id, t0, {"documents": 1, "chunks": 3}, {"/bad": "not a PDF"})
    store.record_result(job_id, t1, {}, {"/c": "failed after 9 tries: ConnectionError"}, failed=True,
                        error="ConnectionError")
    job = store.get(job_id)
    assert job.status == "completed_with_failures"
    assert job.failures == [
        {"source": "/bad", "error": "not a PDF"},
        {"source": "/c", "error": "failed after 9 tries: ConnectionError"},
    ]
    reopened = store.reopen_failed(job_id)
    assert sorted(reopened) == [(f"{job_id}-00001", ["/c"]), (f"{job_id}-r0000", ["/bad"])]
    job = store.get(job_id)
    assert (job.status, job.tasks_total, job.tasks_done, job.tasks_failed) == ("running", 3, 1, 0)
    assert job.failures == []
    store.record_result(job_id, f"{job_id}-00001", {"documents": 1, "chunks": 1}, {})
    store.record_result(job_id, f"{job_id}-r0000", {"documents": 1, "chunks": 2}, {})
    job = store.get(job_id)
    assert job.status == "completed"
    assert job.counters["documents"] == 3 and job.counters["chunks"] == 6


def test_cancel(store: JobStore) -> None:
    job_id, (t0,) = store.create("idx", [["/a"]])
    assert store.cancel(job_id) is True
    assert store.cancel(job_id) is False
    store.record_result(job_id, t0, {}, {})
    assert store.get(job_id).status == "canceled"


def test_listing_newest_first(store: JobStore) -> None:
    first, _ = store.create("idx", [["/a"]])
    second, _ = store.create("idx", [["/b"]])
    ids = [j.id for j in store.list(50)]
    assert ids.index(second) < ids.index(first)


def test_plan_tasks_bounds(tmp_path) -> None:
    files = []
    for i in range(5):
        p = tmp_path / f"f{i}.txt"
        p.write_bytes(b"x" * (100 if i != 2 else 1000))
        files.append(p)
    tasks = plan_tasks(files, max_files=2, max_bytes=1050)
    assert [len(t) for t in tasks] == [2, 1, 2]


def test_expansion_plans_once_and_a_failed_one_expands_again_on_retry(store: JobStore) -> None:
    from workers.jobstore import ExpandPlan

    plan = ExpandPlan(max_files=2, task_max_files=1, task_max_bytes=1 << 20)
    job_id, expand = store.create_expanding("idx", ["/src"], plan)
    try:
        assert expand == f"{job_id}-expand" and store.expand_plan(job_id) == plan
        job = store.get(job_id)
        assert (job.status, job.tasks_total, job.files_total) == ("expanding", 1, 0)
        assert store.plan(job_id, [["/src/a"], ["/src/b"]], {"/src/gone": "gone"}, deleted=3) is True
        assert store.plan(job_id, [["/src/a"], ["/src/b"], ["/src/c"]], {}) is False  # planned once
        job = store.get(job_id)
        assert (job.status, job.tasks_total, job.files_total, job.counters["deleted"]) == ("queued", 3, 2, 3)
        assert store.unpublished(job_id) == [(f"{job_id}-00000", ["/src/a"]), (f"{job_id}-00001", ["/src/b"])]
        store.mark_published(job_id, 1)
        assert store.unpublished(job_id) == [(f"{job_id}-00001", ["/src/b"])]
    finally:
        store.delete(job_id)

    job_id, expand = store.create_expanding("idx", ["/src"], plan)
    try:
        assert store.fail_job(job_id, expand, "over the cap") is True
        assert store.fail_job(job_id, expand, "over the cap") is False
        job = store.get(job_id)
        assert (job.status, job.error, job.tasks_failed, job.finished is not None) == (
            "failed", "over the cap", 1, True)
        assert store.cancel(job_id) is False  # failed is final
        assert store.reopen_failed(job_id) == [(expand, ["/src"])]
        job = store.get(job_id)
        assert (job.status, job.error, job.tasks_failed) == ("expanding", None, 0)
    finally:
        store.delete(job_id)

"""Task time limits must sit below the visibility timeout, soft below hard: one-line errors."""

from __future__ import annotations

import pytest

from esrag.errors import ConfigError
from esrag.settings import load_settings
from workers.jobstore import retries_for
from workers.leases import loss_message


def test_defaults_nest_below_the_visibility_timeout() -> None:
    s = load_settings()
    assert (s.task_soft_time_limit, s.task_time_limit, s.task_visibility_timeout) == (2700, 3000, 3600)
    assert (s.task_lease_seconds, s.task_max_attempts) == (30, 3)


def test_default_limits_follow_a_shorter_visibility_timeout() -> None:
    s = load_settings(task_visibility_timeout=600)
    assert (s.task_soft_time_limit, s.task_time_limit) == (450, 500)


def test_hard_limit_at_or_over_visibility_timeout_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^invalid setting ESRAG_TASK_TIME_LIMIT: Value error, must be "
                       r"below ESRAG_TASK_VISIBILITY_TIMEOUT \(600\)$"):
        load_settings(task_visibility_timeout=600, task_time_limit=600)


def test_soft_limit_at_or_over_hard_limit_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^invalid setting ESRAG_TASK_SOFT_TIME_LIMIT: Value error, "
                       r"must be below ESRAG_TASK_TIME_LIMIT \(100\)$"):
        load_settings(task_time_limit=100, task_soft_time_limit=100)


def test_backoff_retries_cover_the_patience() -> None:
    # 0.25 + 0.5 + 1 + 2 + 4 = 7.75, then 5 s each
    assert retries_for(7) == 5
    assert retries_for(300) == 5 + 59


def test_loss_messages() -> None:
    assert loss_message("died", 3, 2700) == "worker died while processing this file (3 attempts)"
    assert loss_message("timeout", 1, 15) == (
        "task timed out after 15 s while processing this file (1 attempt)")

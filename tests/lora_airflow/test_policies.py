"""The per-run pool/priority policy and the off-peak wait, with a frozen clock."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from lora_airflow.policies import task_instance_mutation_hook
from lora_tasks.spec.conf import PRIORITY_WEIGHTS

REPO = Path(__file__).resolve().parents[2]


def train_ti(task_id: str = "train") -> SimpleNamespace:
    return SimpleNamespace(dag_id="lora_finetune", task_id=task_id, pool="gpu_cpu", priority_weight=10)


def run_of(conf: dict) -> SimpleNamespace:
    return SimpleNamespace(conf=conf)


@pytest.mark.parametrize(
    ("conf", "pool", "weight"),
    [
        ({"priority": "interactive", "gpu_type": "l4"}, "gpu_l4", 100),
        ({"priority": "batch"}, "gpu_cpu", 1),
        ({"job_spec": "job: {priority: interactive, gpu_type: a100-80g}"}, "gpu_a100-80g", 100),
        ({"job_spec": {"job": {"priority": "batch"}}, "priority": "interactive"}, "gpu_cpu", 1),  # the spec wins
        ({"gpu_type": "tpu-v9", "priority": "nonsense"}, "gpu_cpu", 10),  # refused later, with a message
        ({"job_spec": "[not yaml"}, "gpu_cpu", 10),
        ({}, "gpu_cpu", 10),
    ],
)
def test_train_pool_and_weight_follow_the_run(conf: dict, pool: str, weight: int) -> None:
    ti = train_ti()
    task_instance_mutation_hook(ti, dag_run=run_of(conf))
    assert (ti.pool, ti.priority_weight) == (pool, weight)


@pytest.mark.parametrize(
    ("conf", "pool"),
    [
        ({"priority": "interactive", "gpu_type": "l4"}, "gpu_l4_interactive"),  # may preempt: its own pool
        ({"priority": "standard", "gpu_type": "l4"}, "gpu_l4"),
        ({"priority": "batch", "gpu_type": "a100-80g"}, "gpu_a100-80g"),
    ],
)
def test_with_kubernetes_interactive_runs_have_a_pool_of_their_own(conf: dict, pool: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from lora_tasks.settings import platform_settings

    monkeypatch.setenv("LORA_RUNNER", "kubernetes")
    platform_settings.cache_clear()
    try:
        ti = train_ti()
        task_instance_mutation_hook(ti, dag_run=run_of(conf))
    finally:
        platform_settings.cache_clear()
    assert ti.pool == pool
    pools = json.loads((REPO / "include" / "pools.json").read_text())
    assert pools[pool]["slots"] == pools[pool.removesuffix("_interactive")]["slots"] and pools[pool]["include_deferred"]


def test_other_tasks_and_runless_instances_are_left_alone() -> None:
    scan = train_ti(task_id="scan_dataset")
    task_instance_mutation_hook(scan, dag_run=run_of({"priority": "interactive"}))
    assert (scan.pool, scan.priority_weight) == ("gpu_cpu", 10)
    early = train_ti()
    task_instance_mutation_hook(early, dag_run=None)  # as from TaskInstance.__init__
    assert early.pool == "gpu_cpu"
    assert PRIORITY_WEIGHTS["interactive"] > PRIORITY_WEIGHTS["standard"] > PRIORITY_WEIGHTS["batch"]


PARIS = ZoneInfo("Europe/Paris")


def wait_operator(priority: str, now: datetime, deadline: str = "None", predicted_seconds: str = "0"):
    from lora_airflow.off_peak import WaitOffPeakOperator

    operator = WaitOffPeakOperator(task_id="wait_off_peak", priority=priority, deadline=deadline,
                                   predicted_seconds=predicted_seconds)
    operator.now = lambda: now
    return operator


def test_a_deadline_shortens_the_wait_but_never_past_the_window() -> None:
    from airflow.sdk.exceptions import TaskDeferred

    tuesday_noon = datetime(2026, 11, 24, 12, 0, tzinfo=PARIS).astimezone(UTC)
    two_hours = "7200"  # x1.25, plus 4 minutes for a node: must start 2 h 34 min before the deadline
    with pytest.raises(TaskDeferred) as deferred:
        wait_operator("batch", tuesday_noon, "2026-11-24T18:00:00+01:00", two_hours).execute({})
    assert deferred.value.trigger.moment == datetime(2026, 11, 24, 15, 26, tzinfo=PARIS)
    assert "deadline" in deferred.value.kwargs["reason"]
    late = wait_operator("batch", tuesday_noon, "2026-11-24T14:00:00+01:00", two_hours).execute({})
    assert late["waited"] is False and "cannot wait" in late["reason"]
    with pytest.raises(TaskDeferred) as relaxed:  # a deadline after the window opens changes nothing
        wait_operator("batch", tuesday_noon, "2026-11-26T18:00:00+01:00", two_hours).execute({})
    assert relaxed.value.trigger.moment == datetime(2026, 11, 24, 22, 0, tzinfo=PARIS)


def test_batch_defers_to_the_next_window() -> None:
    from airflow.sdk.exceptions import TaskDeferred

    tuesday_noon = datetime(2026, 11, 24, 12, 0, tzinfo=PARIS).astimezone(UTC)
    with pytest.raises(TaskDeferred) as deferred:
        wait_operator("batch", tuesday_noon).execute({})
    assert deferred.value.trigger.moment == datetime(2026, 11, 24, 22, 0, tzinfo=PARIS)
    assert deferred.value.method_name == "execute_complete"


@pytest.mark.parametrize(
    ("priority", "now", "reason"),
    [
        ("interactive", datetime(2026, 11, 24, 12, 0, tzinfo=PARIS), "does not wait"),
        ("standard", datetime(2026, 11, 24, 12, 0, tzinfo=PARIS), "does not wait"),
        ("batch", datetime(2026, 11, 28, 12, 0, tzinfo=PARIS), "inside an off-peak window"),
    ],
)
def test_others_pass_at_once(priority: str, now: datetime, reason: str) -> None:
    result = wait_operator(priority, now).execute({})
    assert result["waited"] is False and reason in result["reason"]

"""The per-run pool/priority policy and the off-peak wait, with a frozen clock."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from lora_airflow.policies import task_instance_mutation_hook
from lora_tasks.request import PRIORITY_WEIGHTS


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


def test_other_tasks_and_runless_instances_are_left_alone() -> None:
    scan = train_ti(task_id="scan_dataset")
    task_instance_mutation_hook(scan, dag_run=run_of({"priority": "interactive"}))
    assert (scan.pool, scan.priority_weight) == ("gpu_cpu", 10)
    early = train_ti()
    task_instance_mutation_hook(early, dag_run=None)  # as from TaskInstance.__init__
    assert early.pool == "gpu_cpu"
    assert PRIORITY_WEIGHTS["interactive"] > PRIORITY_WEIGHTS["standard"] > PRIORITY_WEIGHTS["batch"]


PARIS = ZoneInfo("Europe/Paris")


def wait_operator(priority: str, now: datetime):
    from lora_airflow.off_peak import WaitOffPeakOperator

    operator = WaitOffPeakOperator(task_id="wait_off_peak", priority=priority)
    operator.now = lambda: now
    return operator


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

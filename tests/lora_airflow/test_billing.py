"""The train task's callbacks bill every try once, retried ones included, whichever runner ran it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from lora_airflow.billing import attempt_failed, attempt_started, attempt_succeeded
from lora_airflow.runners import COMMON
from lora_tasks.ledger.store import open_ledger
from lora_tasks.settings import platform_settings

START = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


@dataclass
class TryOfTrain:
    """What Airflow hands a callback: the task instance of one try, and the run's XComs."""

    try_number: int
    start_date: datetime
    workspace: str

    def xcom_pull(self, task_ids: str, **_: Any) -> dict[str, Any]:
        assert task_ids == "validate_request"
        return {"workspace": self.workspace}


@pytest.fixture
def ledger_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    monkeypatch.setenv("LORA_LEDGER_URL", url)
    platform_settings.cache_clear()
    yield url
    platform_settings.cache_clear()


def test_a_retried_try_is_billed_as_well_as_the_last(ledger_url: str, tmp_path: Path) -> None:
    assert COMMON["on_retry_callback"] is attempt_failed and COMMON["on_failure_callback"] is attempt_failed
    ledger = open_ledger(ledger_url)
    ledger.register_run("r1", tenant="acme", job="cats", priority="standard", gpu_type="cpu", submitted_at=START)
    metrics = tmp_path / "train" / "output" / "metrics.jsonl"
    metrics.parent.mkdir(parents=True)
    metrics.write_text('{"step": 1, "peak_memory_bytes": 123}\n')
    first = TryOfTrain(1, START, str(tmp_path))
    attempt_started({"ti": first, "run_id": "r1"})
    ended = lambda: START + timedelta(seconds=30)  # noqa: E731 - the clock when the first try's callbacks run
    COMMON["on_retry_callback"]({"ti": first, "run_id": "r1"}, clock=ended)  # Airflow calls it when a try retries
    COMMON["on_retry_callback"]({"ti": first, "run_id": "r1"}, clock=lambda: START + timedelta(hours=1))  # twice
    second = TryOfTrain(2, START + timedelta(minutes=1), str(tmp_path))
    attempt_started({"ti": second, "run_id": "r1"})
    attempt_succeeded({"ti": second, "run_id": "r1"}, clock=lambda: START + timedelta(minutes=3))
    with ledger.session() as session:
        from lora_tasks.ledger.models import TrainAttempt

        tries = {a.try_number: a for a in session.query(TrainAttempt).filter_by(run_id="r1")}
    assert tries[1].status == "failed" and tries[1].gpu_seconds == 30  # the first bill of a try wins
    assert tries[2].status == "success" and tries[2].gpu_seconds == 120 and tries[2].peak_bytes == 123
    [run] = ledger.runs()
    assert run.status == "success" and run.gpu_seconds == pytest.approx(tries[1].gpu_seconds + tries[2].gpu_seconds)


def test_a_pod_is_billed_from_its_gpu_binding_to_its_container_end(ledger_url: str, tmp_path: Path) -> None:
    from kubernetes.client import models as k8s

    from lora_airflow.runners.kubernetes_pod import PodGpuTime, gpu_span

    ledger = open_ledger(ledger_url)
    ledger.register_run("r2", tenant="acme", job="cats", priority="standard", gpu_type="l4", submitted_at=START)
    task = TryOfTrain(1, START, str(tmp_path))  # the task began at 10:00; a node took 6 minutes to come up
    attempt_started({"ti": task, "run_id": "r2"})
    scheduled, finished = START + timedelta(minutes=6), START + timedelta(minutes=66)
    pod = k8s.V1Pod(status=k8s.V1PodStatus(
        conditions=[k8s.V1PodCondition(type="PodScheduled", status="True", last_transition_time=scheduled)],
        container_statuses=[k8s.V1ContainerStatus(
            name="base", image="lora-trainer", image_id="", ready=False, restart_count=0,
            state=k8s.V1ContainerState(terminated=k8s.V1ContainerStateTerminated(
                exit_code=0, started_at=scheduled + timedelta(minutes=2), finished_at=finished)))]))
    assert gpu_span(pod) == (scheduled, finished, True)
    PodGpuTime.on_pod_completion(pod=pod, context={"ti": task, "run_id": "r2"}, client=None, mode="sync")
    attempt_succeeded({"ti": task, "run_id": "r2"})  # the task's own callback, later: already billed
    [run] = ledger.runs()
    assert run.gpu_seconds == 3600 and run.status == "success"
    assert gpu_span(k8s.V1Pod(status=k8s.V1PodStatus(phase="Pending"))) is None  # never ran: the task bills

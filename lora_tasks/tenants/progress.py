"""How far a tenant's job has got, in the words a tenant needs: the training step of the total and the
latest loss (from the trainer's metrics log in the run's workspace), each stage's state and, for a failed
job, the reason its failed stage's log gives (from Airflow's REST API)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from lora_tasks.ledger.models import Run
from lora_tasks.pipeline.workspace import run_key, train_output
from lora_tasks.tenants.gateway import AirflowGateway, AirflowUnavailable
from lora_tasks.train.outputs import METRICS_FILE


def training_progress(workspace_root: Path, run: Run, published: dict[str, Any] | None) -> dict[str, Any] | None:
    """{step, of, loss} from the last record of the run's metrics log, or once published (its workspace
    is gone) from the adapter's figures; None before training logs a step."""
    path = train_output(workspace_root / run.tenant / run_key(run.run_id, run.submitted_at)) / METRICS_FILE
    try:
        lines = path.read_text().splitlines()
    except OSError:
        if published is None:
            return None
        return {"step": published.get("steps"), "of": run.features.get("steps"),
                "loss": published.get("train_loss_last")}
    for line in reversed(lines):  # the last complete record (one may be half-written)
        try:
            record = json.loads(line)
        except ValueError:
            continue
        return {"step": record["step"], "of": run.features.get("steps"), "loss": record["loss"]}
    return None


def predicted_finish(run: Run) -> datetime | None:
    """When training should end: once started, the start plus the predicted seconds; while queued, what
    admission predicted from the queue and the bounded fleet (else the submission plus the seconds)."""
    if run.status == "refused":
        return None  # it will not run
    if run.finished_at is not None:
        return run.finished_at
    if run.predicted_seconds is None:
        return None
    if run.started_at is None and run.predicted_finish is not None:
        return run.predicted_finish
    return (run.started_at or run.submitted_at) + timedelta(seconds=run.predicted_seconds)


def stage_report(airflow: AirflowGateway, run_id: str) -> dict[str, Any]:
    """Each stage's state and, if one failed, which and why; a note instead when Airflow cannot say."""
    return stage_reports(airflow, [run_id])[run_id]


def stage_reports(airflow: AirflowGateway, run_ids: list[str]) -> dict[str, dict[str, Any]]:
    """``stage_report`` for each run, from one listing of their tasks (and a log read per failed one)."""
    try:
        found = airflow.stage_states(run_ids)
        return {run_id: _report(airflow, run_id, states) for run_id, states in found.items()}
    except (AirflowUnavailable, ValueError) as exc:
        return {run_id: {"stages": None, "note": f"stage states unavailable: {exc}"} for run_id in run_ids}


def _report(airflow: AirflowGateway, run_id: str, states: dict[str, str | None]) -> dict[str, Any]:
    failed = [task for task, state in states.items() if state == "failed" and task != "outcome"]
    report: dict[str, Any] = {"stages": states}
    if failed:
        try:
            reason = airflow.failure_reason(run_id, failed[0])
        except (AirflowUnavailable, ValueError) as exc:  # this log only: the other jobs' reports stand
            reason, report["note"] = None, f"failure reason unavailable: {exc}"
        report["failure"] = {"stage": failed[0], "reason": reason}
    return report

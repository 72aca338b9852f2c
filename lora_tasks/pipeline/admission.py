"""Admission at validate_request: the run's predicted start and finish from the ledger's queue for its GPU
type and the type's ``max_count``, recorded, and the tenant's policy applied to a run predicted late
(``scheduling.admission``). The nightly batch's runs pass through here too, with their batch deadline.

The queue is forecast in the order Airflow's pool serves it: priority class (the train task's
``priority_weight``), then first come, first served. The simulator's fair sharing between tenants
(``scheduling.fair_share``) is not the real pool's order: a task instance's weight is fixed when its run
is created, before the run is predicted, so no consistent fair-share tag can be given it then; on the
real stack a tenant's ``concurrent_jobs`` quota bounds how much of a queue it can hold."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from lora_tasks.errors import LoraTaskError
from lora_tasks.gpu_types import GpuType
from lora_tasks.ledger.models import Run
from lora_tasks.ledger.store import Ledger
from lora_tasks.pipeline.capacity import STALE_AFTER, planner_job
from lora_tasks.scheduling.admission import (
    DEMAND_SPAN,
    Admission,
    decide,
    forecast_from_open,
    reserved_gpus,
)
from lora_tasks.scheduling.planner import PlannerConfig
from lora_tasks.scheduling.windows import OffPeakCalendar


def admit_run(ledger: Ledger, run: Run, gpu: GpuType, late: dict[str, str], calendar: OffPeakCalendar,
              now: datetime, runner: str) -> Admission:
    """Decide on the registered ``run`` (with its first predicted duration) and record the decision; a refused
    run is closed as refused and its tenant told why, with the predicted finish and the fix."""
    assert run.predicted_seconds is not None  # validate_request predicts before it admits
    config = PlannerConfig()
    others = [r for r in ledger.runs(gpu_type=gpu.name, submitted_after=now - max(STALE_AFTER, DEMAND_SPAN))
              if r.run_id != run.run_id and r.predicted_seconds is not None
              and r.status not in ("refused", "cancelled")]  # work that ran or will: what the classes demand
    queue = [planner_job(r) for r in others
             if r.status in ("submitted", "running") and r.submitted_at > now - STALE_AFTER]
    demand: dict[str, float] = defaultdict(float)
    for other in others:
        if other.submitted_at > now - DEMAND_SPAN:
            demand[other.priority] += float(other.predicted_seconds or 0.0)
    predicted = forecast_from_open(queue, planner_job(run), now, calendar, config, gpu.max_count,
                                   _up(ledger, gpu, runner), reserved_gpus(run.priority, demand), fair=False)
    admission = decide(predicted, run.deadline, run.priority, late, config.deadline_margin)
    ledger.record_admission(run.run_id, admission.outcome, predicted.start, predicted.finish)
    if admission.outcome == "refuse":
        ledger.close_run(run.run_id, "refused", now)
        raise LoraTaskError(admission.refusal(gpu.name))
    return admission


def _up(ledger: Ledger, gpu: GpuType, runner: str) -> int:
    """GPUs up now: in Kubernetes mode what the planner last applied (it scales the nodes); a local pool's
    slots are always there."""
    if runner != "kubernetes" or not gpu.is_gpu:
        return gpu.max_count
    last = ledger.last_decision(gpu.name)
    return last.applied if last else 0

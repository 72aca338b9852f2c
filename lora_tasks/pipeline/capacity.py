"""The capacity planner: from the ledger's queue to a decided number of GPUs per type.

    python -m lora_tasks.pipeline.capacity plan [--now 2026-11-24T14:00:00+00:00]

Demand is read from the ledger: runs that passed their data checks (they carry a predicted
duration) and have not finished, with their start time when training has begun; the
interactive arrival forecast comes from the last week of runs. ``planner.desired_gpus``
gives the wish, ``Hysteresis`` (rebuilt from the previous decisions) the decision, and every
decision is written back to the ledger with its inputs. Applying it (pool slots,
placeholder pods) is the Airflow side's job: lora_airflow.fleet.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from typing import Any

from lora_tasks.cli import entry_point
from lora_tasks.gpu_types import GpuType, load_gpu_types
from lora_tasks.ledger.models import CapacityDecision, Run
from lora_tasks.ledger.store import Ledger, open_ledger
from lora_tasks.scheduling.planner import Hysteresis, Job, PlannerConfig, desired_gpus, interactive_forecast
from lora_tasks.scheduling.windows import OffPeakCalendar, load_calendar
from lora_tasks.settings import PlatformSettings

STALE_AFTER = timedelta(days=2)
"""A run queued this long without starting is someone else's problem (cleanup marks failed runs)."""
FORECAST_HISTORY = timedelta(days=8)
"""Interactive arrivals the forecast reads: the same hour on each of the last seven days."""


def planner_job(run: Run) -> Job:
    """A ledger run as the planner and admission see it (predicted; started only while it runs)."""
    return Job(run.run_id, run.priority, run.submitted_at, float(run.predicted_seconds or 0.0), run.deadline,
               run.started_at if run.status == "running" else None, run.tenant)


def _hysteresis(previous: CapacityDecision | None, config: PlannerConfig) -> tuple[int, Hysteresis]:
    """The current GPU count and the hysteresis state the last decision left (stored in its
    inputs, so the DAG's runs behave exactly like one long-lived ``Hysteresis``)."""
    if previous is None:
        return 0, Hysteresis(config)

    def moment(key: str) -> datetime | None:
        value = previous.inputs.get(key)
        return datetime.fromisoformat(value) if value else None

    return previous.applied, Hysteresis(config, moment("lower_since"), moment("last_change"))


def plan(ledger: Ledger, calendar: OffPeakCalendar, gpu_types: dict[str, GpuType], now: datetime,
         config: PlannerConfig | None = None) -> list[CapacityDecision]:
    config = config or PlannerConfig()
    open_runs = [r for r in ledger.runs(statuses=("submitted", "running"), submitted_after=now - STALE_AFTER)
                 if r.predicted_seconds is not None]
    recent = [r for r in ledger.runs(submitted_after=now - FORECAST_HISTORY) if r.priority == "interactive"]
    decisions = []
    for name, gpu in gpu_types.items():
        if not gpu.is_gpu:
            continue
        jobs = [planner_job(r) for r in open_runs if r.gpu_type == name]
        forecast = interactive_forecast(sorted(r.submitted_at for r in recent if r.gpu_type == name), now, calendar)
        wish = desired_gpus(jobs, now, calendar, config, forecast, gpu.max_count)
        current, hysteresis = _hysteresis(ledger.last_decision(name), config)
        applied = hysteresis.decide(current, wish.gpus, now)
        state = {"lower_since": hysteresis.lower_since, "last_change": hysteresis.last_change}
        decision = CapacityDecision(decided_at=now, gpu_type=name, current=current, desired=wish.gpus, applied=applied,
                                    reason=wish.reason[:500],
                                    inputs={**wish.inputs, "forecast_per_hour": forecast,
                                            **{k: v.isoformat() if v else None for k, v in state.items()}})
        ledger.record_decision(decision)
        decisions.append(decision)
    return decisions


def decide(settings: PlatformSettings, now: datetime) -> list[dict[str, Any]]:
    """The planner's decision for this installation (its ledger, calendar and GPU types), recorded,
    in the form the apply step and the CLI read."""
    decisions = plan(open_ledger(settings.ledger_url), load_calendar(settings.scheduling_file),
                     load_gpu_types(settings.gpu_types_file), now)
    return [{"gpu_type": d.gpu_type, "current": d.current, "desired": d.desired, "applied": d.applied,
             "running": int(d.inputs.get("running", 0)), "reason": d.reason} for d in decisions]


@entry_point
def main(argv: list[str] | None = None) -> int:
    from lora_tasks.settings import platform_settings

    parser = argparse.ArgumentParser(prog="python -m lora_tasks.pipeline.capacity",
                                     description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("plan", help="decide GPUs per type now and record the decisions")
    run.add_argument("--now", type=datetime.fromisoformat, default=None)
    args = parser.parse_args(argv)
    for decision in decide(platform_settings(), args.now or datetime.now(UTC)):
        print(f"{decision['gpu_type']:<10} {decision['current']:>3} -> {decision['applied']:>3} "
              f"(wish {decision['desired']}): {decision['reason']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

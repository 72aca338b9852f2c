"""How many GPUs of each type to have, from the work in sight: the predictive policy.

For one GPU type, at time ``now``, the planner sees each run's priority, submission time,
predicted seconds, deadline and (for running ones) start time, plus the recent rate of
interactive arrivals, and wants:

- one GPU per running job (training is never interrupted), per queued interactive job and per queued
  job whose deadline says it must start now (standard deadlines reach the planner this way);
- enough GPUs to work through the queued standard jobs within ``standard_target``;
- batch jobs only off-peak, spread over the rest of the window; in peak hours only the
  batch jobs whose deadline forces them to start;
- warm headroom for the interactive jobs expected before a new node could start
  (arrival rate x (node start-up + mean interactive run)): what lets an interactive job
  start at once instead of waiting for a node.

``Hysteresis`` turns that wish into a decision: scale up at once, scale down only after
the wish has stayed lower for ``cooldown``, by ``max_step_down`` or ``step_down_share`` of
the fleet at a time, whichever is more. The same
code drives the Airflow capacity planner DAG and the simulator's predictive policy.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from lora_tasks.scheduling.windows import OffPeakCalendar


@dataclass(frozen=True)
class Job:
    run_id: str
    priority: str
    submitted_at: datetime
    predicted_seconds: float
    deadline: datetime | None = None
    started_at: datetime | None = None
    tenant: str = ""
    """Whose job: admission orders a queue by tenant (``fair_share``); the planner only counts work."""

    def remaining(self, now: datetime) -> float:
        if self.started_at is None:
            return self.predicted_seconds
        return max(60.0, self.predicted_seconds - (now - self.started_at).total_seconds())


@dataclass(frozen=True)
class PlannerConfig:
    horizon: timedelta = timedelta(minutes=45)
    """Queued work that is due should be under way within this: 45 minutes keeps the generated week's
    standard p95 wait under 30 (bench/scheduling_policies.py; an hour let it reach about 40)."""
    node_startup: timedelta = timedelta(minutes=4)
    deadline_margin: float = 1.25
    """Batch jobs start in peak hours when less than this x their predicted time is left before their deadline."""
    cooldown: timedelta = timedelta(minutes=5)
    max_step_down: int = 4
    """The least a step down may release; a large fleet releases ``step_down_share`` of itself instead."""
    step_down_share: float = 0.25
    """A fixed step drains a fleet ten times larger ten times slower; a share of it drains any size alike."""


def latest_start(deadline: datetime, predicted_seconds: float, config: PlannerConfig) -> datetime:
    """When a batch job must start, window or not, to meet its deadline: its predicted time with
    a margin, plus a node's start-up. The off-peak wait, the planner and the simulator agree on it."""
    return deadline - timedelta(seconds=config.deadline_margin * predicted_seconds) - config.node_startup


@dataclass(frozen=True)
class Wish:
    gpus: int
    reason: str
    inputs: dict[str, float] = field(default_factory=dict)


def desired_gpus(jobs: list[Job], now: datetime, calendar: OffPeakCalendar, config: PlannerConfig,
                 interactive_rate_per_hour: float, max_count: int) -> Wish:
    """The GPUs this type should have now (before hysteresis), and why.

    Work is counted over the next ``horizon``: what running jobs still have to do, plus the
    queued interactive and standard jobs (and batch jobs whose deadline forces them). A GPU
    finishing a job in ten minutes is capacity for the next one, so queued work only asks
    for new GPUs when the running ones cannot absorb it. Queued batch work is spread over
    what is left of the off-peak window, and waits in peak hours.
    """
    horizon = config.horizon.total_seconds()
    running = [j for j in jobs if j.started_at is not None]
    queued = [j for j in jobs if j.started_at is None]
    window = calendar.window_at(now)
    startup = config.node_startup.total_seconds()

    def forced(job: Job) -> bool:  # a batch job that must start within the horizon, window or not
        return job.deadline is not None and \
            latest_start(job.deadline, job.predicted_seconds, config) <= now + config.horizon

    batch = [j for j in queued if j.priority == "batch"]
    interactive = sum(1 for j in queued if j.priority == "interactive")
    # a standard or batch job whose deadline says it must start within a node's start-up needs a GPU of its own
    urgent = sum(1 for j in queued if j.priority != "interactive" and j.deadline is not None
                 and latest_start(j.deadline, j.predicted_seconds, config) <= now + config.node_startup)
    work = sum(min(j.remaining(now), horizon) for j in running) + \
        sum(min(j.predicted_seconds, horizon) for j in queued if j.priority != "batch" or forced(j))
    if window is not None:  # spread queued batch work over what is left of the window
        seconds_left = max(horizon, (window[1] - now).total_seconds())
        batch_gpus = math.ceil(sum(j.predicted_seconds for j in batch if not forced(j)) / seconds_left)
    else:
        batch_gpus = 0
    needed = max(len(running) + interactive + urgent, math.ceil(work / horizon) + batch_gpus)
    # an interactive arrival takes an idle GPU or preempts a lower-priority job (priority classes),
    # so warm headroom is only needed beyond the preemptable running jobs
    expected = math.ceil(interactive_rate_per_hour / 3600 * startup) if interactive_rate_per_hour > 0 else 0
    expected = max(expected, 1 if interactive_rate_per_hour > 0 else 0)
    preemptable = sum(1 for j in running if j.priority != "interactive")
    headroom = max(0, expected - preemptable)
    gpus = min(max_count, needed + headroom)
    inputs = {"running": len(running), "queued": len(queued), "queued_interactive": interactive, "urgent": urgent,
              "work_seconds": work, "batch_gpus": batch_gpus, "headroom": headroom,
              "off_peak": float(window is not None)}
    reason = (f"{work / 3600:.1f} GPU-hours due within {horizon / 3600:.1f} h ({len(running)} running, "
              f"{len(queued)} queued) + {batch_gpus} for batch ({'off-peak' if window else 'peak'}) + "
              f"{headroom} warm for interactive")
    return Wish(gpus, reason, inputs)


@dataclass
class Hysteresis:
    """Up at once; down only after the wish stayed lower for a cool-down, one step (a share of the fleet, at
    least ``max_step_down``) at a time."""

    config: PlannerConfig
    lower_since: datetime | None = None
    last_change: datetime | None = None

    def decide(self, current: int, wish: int, now: datetime) -> int:
        if wish > current:
            self.lower_since, self.last_change = None, now
            return wish
        if wish == current:
            self.lower_since = None
            return current
        self.lower_since = self.lower_since or now
        waited = now - self.lower_since >= self.config.cooldown
        since_change = self.last_change is None or now - self.last_change >= self.config.cooldown
        if waited and since_change:
            self.last_change = now
            step = max(self.config.max_step_down, math.ceil(self.config.step_down_share * current))
            return max(wish, current - step)
        return current


def interactive_forecast(arrivals: list[datetime], now: datetime, calendar: OffPeakCalendar,
                         days: int = 7) -> float:
    """Expected interactive arrivals per hour now: the larger of the last hour's and the average
    of the same local hour on the previous ``days`` days (the working day repeats).

    ``arrivals`` are in time order, so each count is two binary searches: a replay asks this at
    every decision, and rescanning a growing history made its cost grow with the square of the trace."""
    if not arrivals:
        return 0.0
    hour = timedelta(hours=1)

    def between(start: datetime, end: datetime) -> int:  # arrivals in [start, end)
        return bisect.bisect_left(arrivals, end) - bisect.bisect_left(arrivals, start)

    last_hour = bisect.bisect_right(arrivals, now) - bisect.bisect_left(arrivals, now - hour)
    local, first = now.astimezone(calendar.zone), arrivals[0]
    starts = [local - timedelta(days=d) for d in range(1, days + 1)]  # same wall-clock hour, earlier days
    seen = [between(start, start + hour) for start in starts if start + hour > first]  # days the history covers
    return max(float(last_hour), sum(seen) / len(seen) if seen else 0.0)

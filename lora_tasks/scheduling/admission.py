"""Admission: before the platform promises a run, when will it start and finish on the bounded fleet, and
is that in time for its deadline?

``forecast`` list-schedules one GPU type's open work on at most ``gpus`` GPUs (the pool's ``max_count``):
running jobs keep their GPU until their predicted end, the queued jobs served before the new one (priority
class, then the fair-share tag, then submission: ``fair_share``) each take the GPU that frees first, and a
batch job waits for the off-peak window unless its deadline forces it to start (``planner.latest_start``).
A GPU that is not up yet frees after a node's start-up. The new run starts on the first GPU free after
the jobs ahead of it. Interactive jobs that arrive later and preempt are not foreseen: the forecast is what
the queue and capacity say now.

``decide`` compares the predicted finish with the deadline. In time: accept. Late: the tenant's policy for
the run's priority (include/tenants.yaml, ``admission``) accepts it with the later finish, which the run's
outputs and the tenant API show, or refuses it with the predicted finish and the fix. By default a late
batch job is refused (it was asked for by a deadline) and a late standard or interactive one accepted.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from lora_tasks.scheduling.fair_share import FairShare
from lora_tasks.scheduling.planner import Job, PlannerConfig, latest_start
from lora_tasks.scheduling.windows import OffPeakCalendar

PRIORITY_ORDER = {"interactive": 0, "standard": 1, "batch": 2}
LATE_CHOICES = ("accept", "refuse")
DEFAULT_LATE = {"interactive": "accept", "standard": "accept", "batch": "refuse"}
"""What a tenant without an ``admission`` entry gets for a run predicted to miss its deadline."""


class Queued(Protocol):
    """What a forecast reads of a job: the planner's ``Job`` and the simulator's ``TraceJob`` both have it."""

    @property
    def priority(self) -> str: ...
    @property
    def predicted_seconds(self) -> float: ...
    @property
    def deadline(self) -> datetime | None: ...
    @property
    def submitted_at(self) -> datetime: ...


@dataclass(frozen=True)
class Forecast:
    start: datetime
    finish: datetime
    ahead: int
    """Queued jobs served before this one."""
    gpus: int
    """The pool's bound the forecast assumed."""


@dataclass(frozen=True)
class Admission:
    outcome: str
    """"accept", "accept-later" (predicted to finish after its deadline, taken anyway) or "refuse"."""
    forecast: Forecast
    deadline: datetime | None
    margin: float = PlannerConfig.deadline_margin
    """The prediction's duration times this must fit before the deadline."""

    def record(self) -> dict[str, str | int | None]:
        """What the ledger and the run's outputs keep of it."""
        return {"outcome": self.outcome, "predicted_start": self.forecast.start.isoformat(),
                "predicted_finish": self.forecast.finish.isoformat(), "ahead": self.forecast.ahead,
                "gpus": self.forecast.gpus, "deadline": self.deadline.isoformat() if self.deadline else None}

    def refusal(self, gpu_type: str) -> str:
        """The refused tenant's message: the prediction, and what would be accepted."""
        assert self.deadline is not None
        needed = self.forecast.start + (self.forecast.finish - self.forecast.start) * self.margin
        later = needed.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        return (f"job.deadline {_when(self.deadline)} cannot be met: {self.forecast.ahead} queued job(s) are "
                f"served before this one on at most {self.forecast.gpus} {gpu_type} GPU(s), so it would start "
                f"about {_when(self.forecast.start)} and finish about {_when(self.forecast.finish)}. Fix: set "
                f"job.deadline to {_when(later)} or later, submit it at priority standard, or ask an operator to "
                f"raise max_count of {gpu_type} in include/gpu_types.yaml")


def served_key(job: Queued, tag: float) -> tuple[int, float, datetime]:
    """The order a queue is served in: priority class, fair-share tag, submission."""
    return PRIORITY_ORDER[job.priority], tag, job.submitted_at


def forecast(running_remaining: list[float], ahead: Sequence[Queued], new: Queued, now: datetime,
             calendar: OffPeakCalendar, config: PlannerConfig, gpus: int, up: int, reserved: int = 0) -> Forecast:
    """When ``new`` starts and finishes: ``ahead`` (in served order) and then ``new`` list-scheduled on
    ``gpus`` GPUs, of which ``up`` are provisioned now and ``len(running_remaining)`` busy for that many
    more seconds. ``reserved`` of them are left to the higher classes' work expected meanwhile: a batch
    job's promise must still hold when tomorrow's standard jobs are served first."""
    slots = min(max(1, gpus - reserved), len(running_remaining) + len(ahead) + 1)  # more would change nothing
    free = sorted(now + timedelta(seconds=s) for s in running_remaining)[:slots]
    idle = min(slots - len(free), max(0, up - len(running_remaining)))
    free += [now] * idle + [now + config.node_startup] * (slots - len(free) - idle)
    heapq.heapify(free)
    start = now
    for job in [*ahead, new]:
        start = max(heapq.heappop(free), now)
        if job.priority == "batch":
            window = calendar.next_start(start)
            forced = latest_start(job.deadline, job.predicted_seconds, config) if job.deadline else window
            start = max(start, min(window, forced))
        heapq.heappush(free, start + timedelta(seconds=job.predicted_seconds))
    return Forecast(start, start + timedelta(seconds=new.predicted_seconds), len(ahead), max(gpus, 1))


def forecast_from_open(open_jobs: list[Job], new: Job, now: datetime, calendar: OffPeakCalendar,
                       config: PlannerConfig, gpus: int, up: int, reserved: int = 0, fair: bool = True) -> Forecast:
    """``forecast`` from a GPU type's open runs as the ledger holds them. With ``fair`` the fair-share tags are
    rebuilt in submission order (a running job's tag moves the virtual time) and the queue is ordered by
    them; without, each class is first come, first served (what an Airflow pool does)."""
    share, tags = FairShare(), {}
    for job in sorted(open_jobs, key=lambda j: j.submitted_at):
        tags[job.run_id] = share.tag(job.priority, job.tenant, job.predicted_seconds) if fair else 0.0
        if job.started_at is not None:
            share.started(job.priority, tags[job.run_id])
    mine = served_key(new, share.peek(new.priority, new.tenant) if fair else 0.0)
    ahead = sorted((j for j in open_jobs if j.started_at is None and served_key(j, tags[j.run_id]) < mine),
                   key=lambda j: served_key(j, tags[j.run_id]))
    running = [j.remaining(now) for j in open_jobs if j.started_at is not None]
    return forecast(running, ahead, new, now, calendar, config, gpus, up, reserved)


DEMAND_SPAN = timedelta(hours=24)
"""The past a forecast's reservation averages over: a working day and its night."""
RESERVE_FACTOR = 4 / 3
"""The higher classes' demand is not spread evenly over the day. Tuned on the generated week at twice its
load on the bounded pools (bench/scheduling_policies.py): the plain mean broke 4 promises (batch jobs
accepted as in time that missed), a third more broke none, at the price of about 100 refusals instead of 56."""


def reserved_gpus(priority: str, demand: dict[str, float]) -> int:
    """GPUs the classes above ``priority`` will want while a forecast's queue runs: the predicted seconds that
    arrived per class over the last ``DEMAND_SPAN`` (``demand``), as GPUs busy, times ``RESERVE_FACTOR``."""
    rank = PRIORITY_ORDER[priority]
    seconds = sum(s for p, s in demand.items() if PRIORITY_ORDER[p] < rank)
    return math.ceil(RESERVE_FACTOR * seconds / DEMAND_SPAN.total_seconds())


def decide(predicted: Forecast, deadline: datetime | None, priority: str, late: dict[str, str],
           margin: float = PlannerConfig.deadline_margin) -> Admission:
    """Accept a run predicted in time, its training taking ``margin`` x the prediction (durations are
    predicted within about 15%); a late one as the tenant's ``late`` policy for its priority says."""
    run = (predicted.finish - predicted.start) * margin
    if deadline is None or predicted.start + run <= deadline:
        return Admission("accept", predicted, deadline, margin)
    outcome = "refuse" if late.get(priority, DEFAULT_LATE[priority]) == "refuse" else "accept-later"
    return Admission(outcome, predicted, deadline, margin)


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M %Z").strip()

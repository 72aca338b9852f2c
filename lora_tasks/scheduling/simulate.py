"""Replay a workload trace under a capacity policy and see what it costs and how long jobs wait.

    python -m lora_tasks.scheduling.simulate --trace trace.csv --policy static|reactive|predictive [--chart out.png]
    python -m lora_tasks.scheduling.simulate --generate trace.csv --days 7 --seed 1

A discrete-event simulation (a heap of timed events): jobs arrive, wait in their GPU
type's queue (interactive first, then standard, then batch, each oldest first; batch only
during off-peak windows unless its deadline forces it), run for their *actual* seconds on
a node, and leave. Nodes take ``node_startup`` to become ready and are paid from the
moment they are requested until they are released, at the price of the window they are
in. Policies only decide how many nodes each type should have:

- ``static``: a fixed fleet, sized for the trace's peak concurrency, paid around the clock;
- ``reactive``: one more node when a type's queue exceeds a threshold, one less after a
  node has idled for a while (what a cluster autoscaler does on its own);
- ``predictive``: ``planner.desired_gpus`` with ``Hysteresis``, every decision interval, on
  *predicted* durations: the same code as the capacity planner DAG.
"""

from __future__ import annotations

import argparse
import csv
import heapq
import itertools
import math
import random
import sys
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from lora_tasks.errors import LoraTaskError
from lora_tasks.scheduling.planner import (
    Hysteresis,
    Job,
    PlannerConfig,
    desired_gpus,
    interactive_forecast,
    latest_start,
)
from lora_tasks.scheduling.windows import OffPeakCalendar, load_calendar

COLUMNS = ["submit_time", "tenant", "priority", "gpu_type", "predicted_seconds", "actual_seconds", "deadline"]
PRIORITY_ORDER = {"interactive": 0, "standard": 1, "batch": 2}


@dataclass(frozen=True)
class TraceJob:
    run_id: str
    submitted_at: datetime
    tenant: str
    priority: str
    gpu_type: str
    predicted_seconds: float
    actual_seconds: float
    deadline: datetime | None


def _time(value: str, where: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise LoraTaskError(f"{where}: {value!r} is not an ISO 8601 time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def read_trace(path: Path, gpu_types: set[str] | None = None) -> list[TraceJob]:
    """Load and check a trace: columns, order, durations, priorities and GPU types."""
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise LoraTaskError(f"{path}: missing columns {', '.join(missing)}. Fix: the header must be "
                                f"{','.join(COLUMNS)}")
        jobs = []
        for line, row in enumerate(reader, start=2):
            where = f"{path}:{line}"
            submitted = _time(row["submit_time"], where)
            if jobs and submitted < jobs[-1].submitted_at:
                raise LoraTaskError(f"{where}: submit_time {row['submit_time']} is earlier than the line before. "
                                    "Fix: sort the trace by submit_time")
            try:
                predicted, actual = float(row["predicted_seconds"]), float(row["actual_seconds"])
            except ValueError:
                raise LoraTaskError(f"{where}: durations must be numbers of seconds") from None
            if predicted <= 0 or actual <= 0:
                raise LoraTaskError(f"{where}: durations must be positive, got predicted {predicted}, actual "
                                    f"{actual}")
            if row["priority"] not in PRIORITY_ORDER:
                raise LoraTaskError(f"{where}: priority {row['priority']!r} is not interactive, standard or batch")
            if gpu_types is not None and row["gpu_type"] not in gpu_types:
                raise LoraTaskError(f"{where}: GPU type {row['gpu_type']!r} is unknown. Fix: use one of "
                                    f"{', '.join(sorted(gpu_types))}")
            deadline = _time(row["deadline"], where) if row["deadline"] else None
            jobs.append(TraceJob(f"job-{line - 1:05d}", submitted, row["tenant"], row["priority"],
                                 row["gpu_type"], predicted, actual, deadline))
    return jobs


def write_trace(path: Path, jobs: list[TraceJob]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for job in jobs:
            writer.writerow([job.submitted_at.isoformat(), job.tenant, job.priority, job.gpu_type,
                             f"{job.predicted_seconds:.0f}", f"{job.actual_seconds:.0f}",
                             job.deadline.isoformat() if job.deadline else ""])


def generate_trace(start: datetime, days: int, seed: int, calendar: OffPeakCalendar,
                   jobs_per_day: float = 180, gpu_mix: dict[str, float] | None = None) -> list[TraceJob]:
    """A realistic week: arrivals follow the working day (local time, quieter at weekends),
    20% interactive / 50% standard / 30% batch, heavy-tailed durations, predictions within ~15%."""
    rng = random.Random(seed)
    gpu_mix = gpu_mix or {"a100-80g": 0.6, "l4": 0.4}
    jobs, moment, end = [], start, start + timedelta(days=days)
    peak_rate = jobs_per_day / 24 * 2.2  # thinning: draw at the peak rate, keep by the hour's share

    def rate(at: datetime) -> float:
        local = at.astimezone(calendar.zone)
        hour = local.hour + local.minute / 60
        daily = 0.15 + 0.85 * math.exp(-((hour - 14.0) ** 2) / (2 * 3.5**2))
        return jobs_per_day / 24 * 2.2 * daily * (0.35 if local.weekday() >= 5 else 1.0)

    while True:
        moment += timedelta(hours=rng.expovariate(peak_rate))
        if moment >= end:
            return jobs
        if rng.random() > rate(moment) / peak_rate:
            continue
        priority = rng.choices(["interactive", "standard", "batch"], [0.2, 0.5, 0.3])[0]
        median = {"interactive": 900, "standard": 2400, "batch": 3600}[priority]
        actual = min(8 * 3600, max(120, rng.lognormvariate(math.log(median), 0.8)))
        predicted = actual * rng.lognormvariate(0, 0.12)
        deadline = {"interactive": None, "standard": moment + timedelta(hours=12),
                    "batch": moment + timedelta(hours=36)}[priority]
        gpu = rng.choices(list(gpu_mix), list(gpu_mix.values()))[0]
        jobs.append(TraceJob(f"job-{len(jobs) + 1:05d}", moment, f"tenant-{rng.randrange(12):02d}", priority, gpu,
                             predicted, actual, deadline))


# ----------------------------------------------------------------------------- policies


@dataclass
class Policy:
    name: str
    interval: timedelta = timedelta(minutes=5)

    def target(self, sim: Simulation, gpu: str, now: datetime) -> int:
        raise NotImplementedError


class StaticPolicy(Policy):
    def __init__(self, fleet: dict[str, int]) -> None:
        super().__init__("static")
        self.fleet = fleet

    def target(self, sim: Simulation, gpu: str, now: datetime) -> int:
        return self.fleet.get(gpu, 0)


class ReactivePolicy(Policy):
    def __init__(self, queue_threshold: int = 2, idle: timedelta = timedelta(minutes=10)) -> None:
        super().__init__("reactive", interval=timedelta(minutes=1))
        self.queue_threshold, self.idle = queue_threshold, idle

    def target(self, sim: Simulation, gpu: str, now: datetime) -> int:
        nodes = sim.nodes[gpu]
        eligible = [j for j in sim.queues[gpu] if sim.eligible(j, now)]
        if len(eligible) > self.queue_threshold or (eligible and not nodes):
            return len(nodes) + 1
        idle = [n for n in nodes if n.job is None and n.ready_at <= now and now - n.idle_since >= self.idle]
        return len(nodes) - (1 if idle else 0)


class PredictivePolicy(Policy):
    def __init__(self, config: PlannerConfig) -> None:
        super().__init__("predictive")
        self.config = config
        self.hysteresis: dict[str, Hysteresis] = defaultdict(lambda: Hysteresis(self.config))
        self.last_wish: dict[str, Any] = {}

    def target(self, sim: Simulation, gpu: str, now: datetime) -> int:
        jobs = [Job(j.run_id, j.priority, j.submitted_at, j.predicted_seconds, j.deadline) for j in sim.queues[gpu]]
        jobs += [Job(n.job.run_id, n.job.priority, n.job.submitted_at, n.job.predicted_seconds, n.job.deadline,
                     n.started_at) for n in sim.nodes[gpu] if n.job is not None]
        rate = interactive_forecast([at for at, p in sim.arrivals[gpu] if p == "interactive"], now, sim.calendar)
        wish = desired_gpus(jobs, now, sim.calendar, self.config, rate, sim.max_count.get(gpu, 1000))
        self.last_wish[gpu] = wish
        return self.hysteresis[gpu].decide(len(sim.nodes[gpu]), wish.gpus, now)


# --------------------------------------------------------------------------- simulation


@dataclass(eq=False)
class Node:
    requested_at: datetime
    ready_at: datetime
    idle_since: datetime
    job: TraceJob | None = None
    started_at: datetime | None = None
    assignment: int = 0
    """Bumped at each new job: a finish event for an older assignment (a preempted job) is stale."""


CHECKPOINT_LOSS_SECONDS = 300.0
"""Work a preempted job redoes: at most one checkpoint interval (it resumes from its checkpoint)."""


@dataclass
class Simulation:
    calendar: OffPeakCalendar
    policy: Policy
    node_startup: timedelta = timedelta(minutes=4)
    max_count: dict[str, int] = field(default_factory=dict)
    nodes: dict[str, list[Node]] = field(default_factory=lambda: defaultdict(list))
    queues: dict[str, list[TraceJob]] = field(default_factory=lambda: defaultdict(list))
    arrivals: dict[str, list[tuple[datetime, str]]] = field(default_factory=lambda: defaultdict(list))
    cost: float = 0.0
    provisioned_seconds: float = 0.0
    busy_seconds: float = 0.0
    batch_seconds: float = 0.0
    batch_off_peak_seconds: float = 0.0
    waits: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    """Per priority, each finished job's time in the queue, re-queued time after a preemption included."""
    misses: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    series: list[tuple[datetime, int, int]] = field(default_factory=list)
    queued_at: dict[str, datetime] = field(default_factory=dict)
    waited: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    preemptions: int = 0
    finished: int = 0

    def __post_init__(self) -> None:
        self.planner = PlannerConfig(node_startup=self.node_startup)

    def eligible(self, job: TraceJob, now: datetime) -> bool:
        """Batch jobs run off-peak, unless their deadline says they must start now (the off-peak
        wait's rule: ``planner.latest_start``)."""
        if job.priority != "batch" or self.calendar.window_at(now):
            return True
        return job.deadline is not None and latest_start(job.deadline, job.predicted_seconds, self.planner) <= now

    def release(self, gpu: str, node: Node, now: datetime) -> None:
        self.nodes[gpu].remove(node)
        self.cost += self.calendar.cost(gpu, node.requested_at, now)
        self.provisioned_seconds += (now - node.requested_at).total_seconds()

    def run(self, jobs: list[TraceJob], until: datetime | None = None) -> dict[str, Any]:
        counter = itertools.count()
        events: list[tuple[datetime, int, str, Any]] = []
        start = jobs[0].submitted_at if jobs else datetime.now(UTC)
        end = until or (max(j.submitted_at for j in jobs) + timedelta(days=2) if jobs else start)
        for job in jobs:
            heapq.heappush(events, (job.submitted_at, next(counter), "arrive", job))
        for gpu in sorted({j.gpu_type for j in jobs}):
            heapq.heappush(events, (start, next(counter), "decide", gpu))
        if isinstance(self.policy, StaticPolicy):
            for gpu, count in self.policy.fleet.items():
                self.nodes[gpu] = [Node(start, start, start) for _ in range(count)]
        remaining = len(jobs)
        while events:
            now, _, kind, payload = heapq.heappop(events)
            if now > end or (remaining == 0 and kind == "decide" and not any(self.queues.values())
                             and not isinstance(self.policy, StaticPolicy) and not any(self.nodes.values())):
                break
            if kind == "arrive":
                self.queues[payload.gpu_type].append(payload)
                self.queued_at[payload.run_id] = now
                self.arrivals[payload.gpu_type].append((now, payload.priority))
                self._dispatch(payload.gpu_type, now, events, counter)
            elif kind == "finish":
                gpu, node, assignment = payload
                if node.assignment != assignment or node.job is None or node not in self.nodes[gpu]:
                    continue  # the job was preempted: its later run has its own finish event
                self._finish(gpu, node, now)
                remaining -= 1
                self._dispatch(gpu, now, events, counter)
            elif kind == "ready":
                self._dispatch(payload, now, events, counter)
            elif kind == "decide":
                self._scale(payload, now, events, counter)
                self._dispatch(payload, now, events, counter)
                heapq.heappush(events, (now + self.policy.interval, next(counter), "decide", payload))
                self.series.append((now, sum(len(n) for n in self.nodes.values()),
                                    sum(len(q) for q in self.queues.values())))
            if remaining == 0 and isinstance(self.policy, StaticPolicy):
                end = min(end, now)
        for gpu, nodes in self.nodes.items():
            for node in list(nodes):
                self.release(gpu, node, max(end, node.requested_at))
        return self._report(jobs)

    def _scale(self, gpu: str, now: datetime, events: list, counter: Any) -> None:
        nodes = self.nodes[gpu]
        target = max(0, min(self.policy.target(self, gpu, now), self.max_count.get(gpu, 1000)))
        while len(nodes) < target:
            node = Node(now, now + self.node_startup, now + self.node_startup)
            nodes.append(node)
            heapq.heappush(events, (node.ready_at, next(counter), "ready", gpu))
        idle = sorted((n for n in nodes if n.job is None), key=lambda n: n.ready_at, reverse=True)
        for node in idle[: max(0, len(nodes) - target)]:
            self.release(gpu, node, now)

    def _dispatch(self, gpu: str, now: datetime, events: list, counter: Any) -> None:
        queue = self.queues[gpu]
        queue.sort(key=lambda j: (PRIORITY_ORDER[j.priority], j.submitted_at))
        for job in [j for j in queue if self.eligible(j, now)]:
            node = next((n for n in self.nodes[gpu] if n.job is None and n.ready_at <= now), None)
            if node is None and job.priority == "interactive":
                node = self._preempt(gpu, now)
            if node is None:
                continue
            queue.remove(job)
            self._start(gpu, node, job, now, events, counter)

    def _start(self, gpu: str, node: Node, job: TraceJob, now: datetime, events: list, counter: Any) -> None:
        node.job, node.started_at, node.assignment = job, now, node.assignment + 1
        self.waited[job.run_id] += (now - self.queued_at.pop(job.run_id)).total_seconds()
        heapq.heappush(events, (now + timedelta(seconds=job.actual_seconds), next(counter), "finish",
                                (gpu, node, node.assignment)))

    def _preempt(self, gpu: str, now: datetime) -> Node | None:
        """An interactive job takes the node of the lowest-priority running job (Kubernetes priority
        classes do this); the evicted job goes back to the queue and resumes from its checkpoint."""
        victims = [n for n in self.nodes[gpu] if n.job is not None and n.job.priority != "interactive"]
        if not victims:
            return None
        node = max(victims, key=lambda n: (PRIORITY_ORDER[n.job.priority], n.started_at))
        job, elapsed = node.job, (now - node.started_at).total_seconds()
        self._account(job, node.started_at, now)
        self.queues[gpu].append(replace(job, actual_seconds=job.actual_seconds - elapsed + CHECKPOINT_LOSS_SECONDS,
                                        predicted_seconds=max(60.0, job.predicted_seconds - elapsed)
                                        + CHECKPOINT_LOSS_SECONDS))
        self.queued_at[job.run_id] = now
        self.preemptions += 1
        node.job, node.started_at = None, None
        return node

    def _account(self, job: TraceJob, started: datetime, now: datetime) -> None:
        seconds = (now - started).total_seconds()
        self.busy_seconds += seconds
        if job.priority == "batch":
            self.batch_seconds += seconds
            self.batch_off_peak_seconds += self.calendar.off_peak_seconds(started, now)

    def _finish(self, gpu: str, node: Node, now: datetime) -> None:
        job, started = node.job, node.started_at
        assert job is not None and started is not None
        self._account(job, started, now)
        self.waits[job.priority].append(self.waited[job.run_id])
        self.finished += 1
        if job.deadline is not None and now > job.deadline:
            self.misses[job.priority] += 1
        node.job, node.started_at, node.idle_since = None, None, now

    def _report(self, jobs: list[TraceJob]) -> dict[str, Any]:
        unfinished = len(jobs) - self.finished  # still queued or running when the replay ended

        def pct(values: list[float], q: float) -> float:
            return float(np.percentile(values, q)) / 60 if values else 0.0

        return {
            "policy": self.policy.name,
            "jobs": len(jobs),
            "unfinished": unfinished,
            "gpu_hours": self.provisioned_seconds / 3600,
            "cost": self.cost,
            "utilisation": self.busy_seconds / self.provisioned_seconds if self.provisioned_seconds else 0.0,
            "batch_off_peak_share": self.batch_off_peak_seconds / self.batch_seconds if self.batch_seconds else 0.0,
            "preemptions": self.preemptions,
            **{f"{p}_wait_p50_min": pct(self.waits[p], 50) for p in PRIORITY_ORDER},
            **{f"{p}_wait_p95_min": pct(self.waits[p], 95) for p in PRIORITY_ORDER},
            **{f"{p}_deadline_misses": self.misses[p] for p in PRIORITY_ORDER},
        }


def peak_fleet(jobs: list[TraceJob], calendar: OffPeakCalendar) -> dict[str, int]:
    """Per GPU type, the most jobs that would run at once if none ever waited: the static fleet."""
    fleet: dict[str, int] = {}
    for gpu in {j.gpu_type for j in jobs}:
        edges = sorted([(j.submitted_at, 1) for j in jobs if j.gpu_type == gpu]
                       + [(j.submitted_at + timedelta(seconds=j.actual_seconds), -1) for j in jobs
                          if j.gpu_type == gpu], key=lambda e: (e[0], e[1]))
        level = best = 0
        for _, step in edges:
            level += step
            best = max(best, level)
        fleet[gpu] = best
    return fleet


def simulate(jobs: list[TraceJob], policy_name: str, calendar: OffPeakCalendar, max_count: dict[str, int],
             node_startup: timedelta = timedelta(minutes=4)) -> tuple[dict[str, Any], Simulation]:
    policies = {
        "static": lambda: StaticPolicy(peak_fleet(jobs, calendar)),
        "reactive": lambda: ReactivePolicy(),
        "predictive": lambda: PredictivePolicy(PlannerConfig(node_startup=node_startup)),
    }
    if policy_name not in policies:
        raise LoraTaskError(f"--policy {policy_name!r} is unknown. Fix: use static, reactive or predictive")
    sim = Simulation(calendar, policies[policy_name](), node_startup, max_count)
    return sim.run(jobs), sim


def chart(runs: dict[str, Simulation], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (fleet, queue) = plt.subplots(2, 1, figsize=(12, 6), sharex=True)
    for name, sim in runs.items():
        times = [t for t, _, _ in sim.series]
        fleet.step(times, [n for _, n, _ in sim.series], where="post", label=name, linewidth=1)
        queue.step(times, [q for _, _, q in sim.series], where="post", label=name, linewidth=1)
    fleet.set_ylabel("GPUs provisioned")
    queue.set_ylabel("jobs queued")
    fleet.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def main(argv: list[str] | None = None) -> int:
    from lora_tasks.gpu_types import load_gpu_types
    from lora_tasks.settings import platform_settings

    parser = argparse.ArgumentParser(prog="python -m lora_tasks.scheduling.simulate",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--trace", type=Path)
    parser.add_argument("--policy", default="predictive")
    parser.add_argument("--generate", type=Path, help="write a generated trace here instead of simulating")
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--node-startup-minutes", type=float, default=4)
    parser.add_argument("--chart", type=Path)
    args = parser.parse_args(argv)
    settings = platform_settings()
    calendar = load_calendar(settings.scheduling_file)
    types = load_gpu_types(settings.gpu_types_file)
    try:
        if args.generate:
            start = datetime(2026, 11, 2, tzinfo=calendar.zone).astimezone(UTC)  # a Monday
            write_trace(args.generate, generate_trace(start, args.days, args.seed, calendar))
            print(f"wrote {args.generate}")
            return 0
        if not args.trace:
            raise LoraTaskError("give --trace FILE (or --generate FILE)")
        jobs = read_trace(args.trace, set(types))
        report, sim = simulate(jobs, args.policy, calendar, {n: t.max_count for n, t in types.items()},
                               timedelta(minutes=args.node_startup_minutes))
    except LoraTaskError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for key, value in report.items():
        print(f"{key:<28} {value:.3f}" if isinstance(value, float) else f"{key:<28} {value}")
    if args.chart:
        print(f"chart: {chart({args.policy: sim}, args.chart)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

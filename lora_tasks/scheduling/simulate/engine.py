"""The discrete-event engine: a heap of timed events (arrivals, finishes, nodes becoming ready,
policy decisions), per-type queues in priority order, preemption, and the cost of every node."""

from __future__ import annotations

import bisect
import heapq
import itertools
import random
from collections import defaultdict, deque
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from lora_tasks.scheduling.admission import DEFAULT_LATE, DEMAND_SPAN, decide, forecast, reserved_gpus, served_key
from lora_tasks.scheduling.fair_share import FairShare
from lora_tasks.scheduling.planner import (
    PlannerConfig,
    latest_start,
)
from lora_tasks.scheduling.simulate.mechanics import Mechanics
from lora_tasks.scheduling.simulate.policies import UNBOUNDED, Policy
from lora_tasks.scheduling.simulate.trace import PRIORITY_ORDER, TraceJob
from lora_tasks.scheduling.windows import OffPeakCalendar


@dataclass(eq=False)
class Node:
    requested_at: datetime
    ready_at: datetime
    idle_since: datetime
    job: TraceJob | None = None
    started_at: datetime | None = None
    assignment: int = 0
    """Bumped at each new job: a finish event for an older assignment (a preempted job) is stale."""


@dataclass
class Simulation:
    calendar: OffPeakCalendar
    policy: Policy
    max_count: dict[str, int] = field(default_factory=dict)
    mechanics: Mechanics = field(default_factory=Mechanics)
    nodes: dict[str, list[Node]] = field(default_factory=lambda: defaultdict(list))
    queues: dict[str, list[TraceJob]] = field(default_factory=lambda: defaultdict(list))
    interactive_arrivals: dict[str, list[datetime]] = field(default_factory=lambda: defaultdict(list))
    """Per GPU type, in time order: what the predictive policy forecasts from."""
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
    latest_starts: dict[str, datetime] = field(default_factory=dict)
    """Per queued job: when its deadline forces it to start, before the standard queue and off-peak or not."""
    waited: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    preemptions: int = 0
    redone_seconds: float = 0.0
    """What preemption cost the evicted jobs: restarts, and the work since their last checkpoint."""
    finished: int = 0
    late: dict[str, str] | None = field(default_factory=lambda: dict(DEFAULT_LATE))
    """Admission: what a job with a deadline predicted late gets, per priority (``admission.decide``); None
    takes every job unasked."""
    refused: set[str] = field(default_factory=set)
    accepted_late: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    promised: set[str] = field(default_factory=set)
    """Jobs accepted as in time: a miss among them is a broken promise."""
    broken_promises: int = 0
    fair: dict[str, FairShare] = field(default_factory=lambda: defaultdict(FairShare))
    tags: dict[str, float] = field(default_factory=dict)
    """Each job's fair-share start tag, kept across a preemption."""
    arrivals: dict[str, deque] = field(default_factory=lambda: defaultdict(deque))
    demand: dict[str, dict[str, float]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(float)))
    """Per GPU type: the last ``DEMAND_SPAN``'s arrivals and their predicted seconds per class."""

    def __post_init__(self) -> None:
        self.planner = PlannerConfig(node_startup=self.mechanics.mean_boot())
        self.rng = random.Random(self.mechanics.seed)  # boot times

    def eligible(self, gpu: str, now: datetime) -> list[TraceJob]:
        """The queued jobs that may start now, in the order they are served: interactive ones, then those whose
        deadline says they must start now (``planner.latest_start``, worked out once a job when it is queued;
        the most urgent first), then the rest in queue order, batch jobs only off-peak."""
        queue = self.queues[gpu]
        urgent = sorted((j for j in queue if j.priority != "interactive" and self.latest_starts[j.run_id] <= now),
                        key=lambda j: self.latest_starts[j.run_id])
        off_peak = self.calendar.window_at(now) is not None
        chosen = {j.run_id for j in urgent}
        waiting = [j for j in queue if j.run_id not in chosen
                   and (j.priority == "standard" or (off_peak and j.priority == "batch"))]
        return [j for j in queue if j.priority == "interactive"] + urgent + waiting

    def served(self, job: TraceJob) -> tuple[int, float, datetime]:
        return served_key(job, self.tags[job.run_id])

    def enqueue(self, gpu: str, job: TraceJob, now: datetime) -> None:
        """Queue ``job`` in the order jobs are served (priority, fair-share tag, submission; a tie after those
        queued before), so that no dispatch has to sort. A preempted job keeps its tag."""
        if job.run_id not in self.tags:
            self.tags[job.run_id] = self.fair[gpu].tag(job.priority, job.tenant, job.predicted_seconds)
        bisect.insort(self.queues[gpu], job, key=self.served)
        self.queued_at[job.run_id] = now
        self.latest_starts[job.run_id] = (latest_start(job.deadline, job.predicted_seconds, self.planner)
                                          if job.deadline is not None else datetime.max.replace(tzinfo=UTC))

    def release(self, gpu: str, node: Node, now: datetime) -> None:
        self.nodes[gpu].remove(node)
        self.cost += self.calendar.cost(gpu, node.requested_at, now)
        self.provisioned_seconds += (now - node.requested_at).total_seconds()

    def run(self, jobs: list[TraceJob], until: datetime | None = None) -> None:
        """Replay ``jobs`` until every one has finished and the policy has released what it pays for."""
        if not jobs:
            return
        counter = itertools.count()
        events: list[tuple[datetime, int, str, Any]] = []
        start = jobs[0].submitted_at
        end = until or max(j.submitted_at for j in jobs) + timedelta(days=2)
        for job in jobs:
            heapq.heappush(events, (job.submitted_at, next(counter), "arrive", job))
        for gpu in sorted({j.gpu_type for j in jobs}):
            heapq.heappush(events, (start, next(counter), "decide", gpu))
        for gpu, count in self.policy.initial_fleet().items():
            self.nodes[gpu] = [Node(start, start, start) for _ in range(count)]
        remaining = len(jobs)
        while events:
            now, _, kind, payload = heapq.heappop(events)
            if now > end:
                break
            if kind == "arrive":
                if not self.admit(payload.gpu_type, payload, now):
                    remaining -= 1
                    continue
                self.enqueue(payload.gpu_type, payload, now)
                if payload.priority == "interactive":
                    self.interactive_arrivals[payload.gpu_type].append(now)
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
            if remaining == 0 and self.policy.done(self):  # nothing left to run or to pay for
                end = min(end, now)
                break
        for gpu, nodes in self.nodes.items():
            for node in list(nodes):
                self.release(gpu, node, max(end, node.requested_at))

    def admit(self, gpu: str, job: TraceJob, now: datetime) -> bool:
        """Whether ``job`` is taken: its predicted finish on the policy's capacity against its deadline."""
        arrivals, demand = self.arrivals[gpu], self.demand[gpu]
        arrivals.append(job)
        demand[job.priority] += job.predicted_seconds
        while arrivals[0].submitted_at < now - DEMAND_SPAN:
            gone = arrivals.popleft()
            demand[gone.priority] -= gone.predicted_seconds
        if self.late is None or job.deadline is None:
            return True
        queue, nodes = self.queues[gpu], self.nodes[gpu]
        mine = served_key(job, self.fair[gpu].peek(job.priority, job.tenant))
        ahead = queue[: bisect.bisect_right(queue, mine, key=self.served)]  # enqueue puts it after its equals
        running = [max(60.0, n.job.predicted_seconds - (now - n.started_at).total_seconds())
                   for n in nodes if n.job is not None and n.started_at is not None]
        up = sum(1 for n in nodes if n.ready_at <= now)
        predicted = forecast(running, ahead, job, now, self.calendar, self.planner,
                             self.policy.capacity(self, gpu), up, reserved_gpus(job.priority, demand))
        outcome = decide(predicted, job.deadline, job.priority, self.late).outcome
        if outcome == "refuse":
            self.refused.add(job.run_id)
            return False
        if outcome == "accept-later":
            self.accepted_late[job.priority] += 1
        else:
            self.promised.add(job.run_id)
        return True

    def _scale(self, gpu: str, now: datetime, events: list, counter: Any) -> None:
        nodes = self.nodes[gpu]
        target = max(0, min(self.policy.target(self, gpu, now), self.max_count.get(gpu, UNBOUNDED)))
        while len(nodes) < target:
            ready = now + self.mechanics.boot(self.rng)
            node = Node(now, ready, ready)
            nodes.append(node)
            heapq.heappush(events, (node.ready_at, next(counter), "ready", gpu))
        # the cluster autoscaler removes a node only once it has been unneeded for its scale-down delay; a node
        # still booting is paid for and removable that long after it is up (idle_since is its ready time)
        delay = self.mechanics.scale_down_delay
        idle = sorted((n for n in nodes if n.job is None and now - n.idle_since >= delay),
                      key=lambda n: n.ready_at, reverse=True)
        for node in idle[: max(0, len(nodes) - target)]:
            self.release(gpu, node, now)

    def _dispatch(self, gpu: str, now: datetime, events: list, counter: Any) -> None:
        """Start eligible jobs in priority order on free ready nodes; interactive ones may preempt. Once a
        job other than an interactive one finds no node, none after it can: the scan stops there."""
        queue = self.queues[gpu]
        for job in self.eligible(gpu, now):
            node = next((n for n in self.nodes[gpu] if n.job is None and n.ready_at <= now), None)
            if node is None and job.priority == "interactive":
                node = self._preempt(gpu, now)
            if node is None:
                if job.priority == "interactive":
                    continue
                break
            queue.remove(job)
            self._start(gpu, node, job, now, events, counter)

    def _start(self, gpu: str, node: Node, job: TraceJob, now: datetime, events: list, counter: Any) -> None:
        node.job, node.started_at, node.assignment = job, now, node.assignment + 1
        self.fair[gpu].started(job.priority, self.tags[job.run_id])
        self.waited[job.run_id] += (now - self.queued_at.pop(job.run_id)).total_seconds()
        heapq.heappush(events, (now + timedelta(seconds=job.actual_seconds), next(counter), "finish",
                                (gpu, node, node.assignment)))

    def _preempt(self, gpu: str, now: datetime) -> Node | None:
        """An interactive job takes the node of the lowest-priority running job (Kubernetes priority
        classes do this); the evicted job goes back to the queue and resumes from its checkpoint."""
        if not self.mechanics.preemption:
            return None
        victims = [n for n in self.nodes[gpu] if n.job is not None and n.job.priority != "interactive"]
        if not victims:
            return None
        node = max(victims, key=lambda n: (PRIORITY_ORDER[n.job.priority], n.started_at))
        job, elapsed = node.job, (now - node.started_at).total_seconds()
        self._account(job, node.started_at, now)
        lost = self.mechanics.redone_seconds(gpu, elapsed)
        self.enqueue(gpu, replace(job, actual_seconds=job.actual_seconds - elapsed + lost,
                                  predicted_seconds=max(60.0, job.predicted_seconds - elapsed) + lost), now)
        self.preemptions += 1
        self.redone_seconds += lost
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
            self.broken_promises += job.run_id in self.promised
        node.job, node.started_at, node.idle_since = None, None, now

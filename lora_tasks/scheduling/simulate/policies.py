"""Capacity policies: each only decides how many nodes a GPU type should have now."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from lora_tasks.scheduling.planner import (
    Hysteresis,
    Job,
    PlannerConfig,
    desired_gpus,
    interactive_forecast,
)
from lora_tasks.scheduling.simulate.trace import TraceJob

UNBOUNDED = 1000
"""The node count of a pool without ``max_count``: more than any trace here asks for."""

if TYPE_CHECKING:
    from lora_tasks.scheduling.simulate.engine import Simulation


@dataclass
class Policy:
    name: str
    interval: timedelta = timedelta(minutes=5)

    def target(self, sim: Simulation, gpu: str, now: datetime) -> int:
        """How many nodes of ``gpu`` to have now."""
        raise NotImplementedError

    def initial_fleet(self) -> dict[str, int]:
        """Nodes per GPU type that are ready when the replay starts."""
        return {}

    def capacity(self, sim: Simulation, gpu: str) -> int:
        """The most nodes of ``gpu`` this policy can have: what admission predicts on."""
        return sim.max_count.get(gpu, UNBOUNDED)

    def done(self, sim: Simulation) -> bool:
        """Whether, every job having finished, nothing is left to pay for: a policy that scales is done
        once it has released its last node."""
        return not any(sim.nodes.values())


class StaticPolicy(Policy):
    def __init__(self, fleet: dict[str, int]) -> None:
        super().__init__("static")
        self.fleet = fleet

    def target(self, sim: Simulation, gpu: str, now: datetime) -> int:
        return self.fleet.get(gpu, 0)

    def initial_fleet(self) -> dict[str, int]:
        return self.fleet

    def capacity(self, sim: Simulation, gpu: str) -> int:
        return self.fleet.get(gpu, 0)

    def done(self, sim: Simulation) -> bool:
        """A fixed fleet is paid for as long as the work lasts, and no longer."""
        return True


class ReactivePolicy(Policy):
    def __init__(self, queue_threshold: int = 2, idle: timedelta = timedelta(minutes=10)) -> None:
        super().__init__("reactive", interval=timedelta(minutes=1))
        self.queue_threshold, self.idle = queue_threshold, idle

    def target(self, sim: Simulation, gpu: str, now: datetime) -> int:
        nodes = sim.nodes[gpu]
        eligible = sim.eligible(gpu, now)
        if len(eligible) > self.queue_threshold or (eligible and not nodes):
            return len(nodes) + 1
        idle = [n for n in nodes if n.job is None and n.ready_at <= now and now - n.idle_since >= self.idle]
        return len(nodes) - (1 if idle else 0)


class PredictivePolicy(Policy):
    def __init__(self, config: PlannerConfig) -> None:
        super().__init__("predictive")
        self.config = config
        self.hysteresis: dict[str, Hysteresis] = defaultdict(lambda: Hysteresis(self.config))

    def target(self, sim: Simulation, gpu: str, now: datetime) -> int:
        jobs = [Job(j.run_id, j.priority, j.submitted_at, j.predicted_seconds, j.deadline) for j in sim.queues[gpu]]
        jobs += [Job(n.job.run_id, n.job.priority, n.job.submitted_at, n.job.predicted_seconds, n.job.deadline,
                     n.started_at) for n in sim.nodes[gpu] if n.job is not None]
        rate = interactive_forecast(sim.interactive_arrivals[gpu], now, sim.calendar)
        wish = desired_gpus(jobs, now, sim.calendar, self.config, rate, sim.max_count.get(gpu, UNBOUNDED))
        return self.hysteresis[gpu].decide(len(sim.nodes[gpu]), wish.gpus, now)


def peak_fleet(jobs: list[TraceJob]) -> dict[str, int]:
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

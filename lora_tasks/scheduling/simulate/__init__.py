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

from datetime import timedelta
from typing import Any

from lora_tasks.errors import LoraTaskError
from lora_tasks.scheduling.planner import PlannerConfig
from lora_tasks.scheduling.simulate.engine import Simulation
from lora_tasks.scheduling.simulate.policies import PredictivePolicy, ReactivePolicy, StaticPolicy, peak_fleet
from lora_tasks.scheduling.simulate.report import summary
from lora_tasks.scheduling.simulate.trace import TraceJob
from lora_tasks.scheduling.windows import OffPeakCalendar


def simulate(jobs: list[TraceJob], policy_name: str, calendar: OffPeakCalendar, max_count: dict[str, int],
             node_startup: timedelta = timedelta(minutes=4)) -> tuple[dict[str, Any], Simulation]:
    policies = {
        "static": lambda: StaticPolicy(peak_fleet(jobs)),
        "reactive": lambda: ReactivePolicy(),
        "predictive": lambda: PredictivePolicy(PlannerConfig(node_startup=node_startup)),
    }
    if policy_name not in policies:
        raise LoraTaskError(f"--policy {policy_name!r} is unknown. Fix: use static, reactive or predictive")
    sim = Simulation(calendar, policies[policy_name](), node_startup, max_count)
    sim.run(jobs)
    return summary(sim, jobs), sim

"""Replay a workload trace under capacity policies and see what each costs and how long jobs wait.

    python -m lora_tasks.scheduling.simulate replay [JOBS.csv] [--calendar scheduling.yaml]
        [--boot-seconds 240] [--policy static|reactive|predictive|all] [--chart out.png]
    python -m lora_tasks.scheduling.simulate generate OUT.csv [--days 7] [--seed 1]

A discrete-event simulation (a heap of timed events): jobs arrive, wait in their GPU
type's queue (interactive first, then standard, then batch, each oldest first; batch only
during off-peak windows unless its deadline forces it), run for their *actual* seconds on
a node, and leave. Nodes take a boot time (``mechanics``) to become ready and are paid from the
moment they are requested until they are released, at the price of the window they are
in. Policies only decide how many nodes each type should have:

- ``static``: a fixed fleet paid around the clock: the smallest one that meets the
  predictive policy's service levels (``baseline``), so the comparison is fair;
- ``reactive``: one more node when a type's queue exceeds a threshold, one less after a
  node has idled for a while (what a cluster autoscaler does on its own);
- ``predictive``: ``planner.desired_gpus`` with ``Hysteresis``, every decision interval, on
  *predicted* durations: the same code as the capacity planner DAG.

A job with a deadline is admitted first (``admission``): its predicted finish on the policy's capacity
(the pools' ``max_count``, or the static fleet) against its deadline; a late batch job is refused, a late
standard one taken. Within a priority class tenants share the GPUs by start-time fair queueing
(``fair_share``), and a job whose deadline says it must start now goes before the standard queue.

Each is shown beside the cost lower bound (``bounds``), with node pools bounded by the
GPU types' ``max_count`` and unbounded (``compare``).
"""

from __future__ import annotations

from typing import Any

from lora_tasks.scheduling.admission import DEFAULT_LATE
from lora_tasks.scheduling.simulate.engine import Simulation
from lora_tasks.scheduling.simulate.mechanics import Mechanics
from lora_tasks.scheduling.simulate.policies import Policy
from lora_tasks.scheduling.simulate.report import summary
from lora_tasks.scheduling.simulate.trace import TraceJob
from lora_tasks.scheduling.windows import OffPeakCalendar


def simulate(jobs: list[TraceJob], policy: Policy, calendar: OffPeakCalendar, max_count: dict[str, int],
             mechanics: Mechanics | None = None, late: dict[str, str] | None = DEFAULT_LATE,
             ) -> tuple[dict[str, Any], Simulation]:
    """Replay ``jobs``; ``late`` is the admission policy for jobs predicted late (None: admit every job)."""
    sim = Simulation(calendar, policy, max_count, mechanics or Mechanics(), late=None if late is None else dict(late))
    sim.run(jobs)
    return summary(sim, jobs), sim

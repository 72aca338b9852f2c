"""The fair static baseline: the smallest fixed fleet that serves jobs as well as a given policy.

Sizing a static fleet for the peak concurrency of jobs that never wait makes any scaling
policy look good. The fair comparison is the fleet an operator would buy to meet the same
service levels: per GPU type, the fewest nodes with which the replay's interactive and
standard p95 waits are no longer, and its deadline misses and unfinished jobs no more, than
the policy's. Found by search: start from a fleet that meets the levels, then lower each
GPU type in turn by bisection while the others stay fixed (waits shrink as nodes are added,
so each type's smallest sufficient count is where the levels stop being met).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lora_tasks.scheduling.simulate.engine import Simulation
from lora_tasks.scheduling.simulate.mechanics import Mechanics
from lora_tasks.scheduling.simulate.policies import UNBOUNDED, StaticPolicy, peak_fleet
from lora_tasks.scheduling.simulate.report import summary
from lora_tasks.scheduling.simulate.trace import TraceJob
from lora_tasks.scheduling.windows import OffPeakCalendar


@dataclass(frozen=True)
class ServiceLevels:
    interactive_p95_min: float
    standard_p95_min: float
    deadline_misses: int
    unfinished: int
    refused: int
    """Jobs admission turned away: a fleet that meets the waits by refusing more work does not meet them."""

    @classmethod
    def of(cls, report: dict[str, Any]) -> ServiceLevels:
        return cls(report["interactive_wait_p95_min"], report["standard_wait_p95_min"],
                   report["standard_deadline_misses"] + report["batch_deadline_misses"], report["unfinished"],
                   report["refused"])

    def met_by(self, report: dict[str, Any]) -> bool:
        other = ServiceLevels.of(report)
        return (other.interactive_p95_min <= self.interactive_p95_min + 1e-9
                and other.standard_p95_min <= self.standard_p95_min + 1e-9
                and other.deadline_misses <= self.deadline_misses and other.unfinished <= self.unfinished
                and other.refused <= self.refused)


@dataclass(frozen=True)
class StaticBaseline:
    fleet: dict[str, int]
    meets_levels: bool
    """False when even the largest fleet the node pools allow misses the levels (then it is that fleet)."""
    report: dict[str, Any]
    simulation: Simulation


def fair_static_fleet(jobs: list[TraceJob], calendar: OffPeakCalendar, max_count: dict[str, int],
                      mechanics: Mechanics, levels: ServiceLevels) -> StaticBaseline:
    types = sorted({j.gpu_type for j in jobs})
    ceiling = {gpu: max_count.get(gpu, UNBOUNDED) for gpu in types}
    runs: dict[tuple[tuple[str, int], ...], tuple[dict[str, Any], Simulation]] = {}

    def replay(fleet: dict[str, int]) -> tuple[dict[str, Any], Simulation]:
        key = tuple(sorted(fleet.items()))
        if key not in runs:
            sim = Simulation(calendar, StaticPolicy(dict(fleet)), max_count, mechanics)
            sim.run(jobs)
            runs[key] = summary(sim, jobs), sim
        return runs[key]

    fleet = {gpu: min(max(1, count), ceiling[gpu]) for gpu, count in peak_fleet(jobs).items()}
    while not levels.met_by(replay(fleet)[0]) and any(fleet[g] < ceiling[g] for g in types):
        fleet = {gpu: min(2 * count, ceiling[gpu]) for gpu, count in fleet.items()}
    if not levels.met_by(replay(fleet)[0]):
        return StaticBaseline(fleet, False, *replay(fleet))
    for gpu in types:
        low, high = 0, fleet[gpu]  # high meets the levels; find the smallest count that does
        while low < high:
            middle = (low + high) // 2
            if levels.met_by(replay({**fleet, gpu: middle})[0]):
                high = middle
            else:
                low = middle + 1
        fleet[gpu] = high
    return StaticBaseline(fleet, True, *replay(fleet))

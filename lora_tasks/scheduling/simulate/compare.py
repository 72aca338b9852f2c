"""The policies side by side on one trace: fair static, reactive and predictive, each as a
multiple of the cost lower bound, with node pools bounded by ``max_count`` and unbounded."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from lora_tasks.errors import LoraTaskError
from lora_tasks.scheduling.admission import DEFAULT_LATE
from lora_tasks.scheduling.planner import PlannerConfig
from lora_tasks.scheduling.simulate import simulate
from lora_tasks.scheduling.simulate.baseline import ServiceLevels, fair_static_fleet
from lora_tasks.scheduling.simulate.bounds import cost_lower_bound, service_level_bound
from lora_tasks.scheduling.simulate.engine import Simulation
from lora_tasks.scheduling.simulate.mechanics import Mechanics
from lora_tasks.scheduling.simulate.policies import PredictivePolicy, ReactivePolicy
from lora_tasks.scheduling.simulate.trace import TraceJob
from lora_tasks.scheduling.windows import OffPeakCalendar

POLICIES = ("static", "reactive", "predictive", "predictive-no-preemption")
"""The last is predictive on a cluster where interactive jobs wait instead of evicting another job."""
NO_ADMISSION = "predictive-no-admission"
"""Predictive taking every job unasked: what admission control buys when the pools are short."""


@dataclass(frozen=True)
class Row:
    pools: str
    """"bounded" (each GPU type at most its max_count) or "unbounded"."""
    policy: str
    report: dict[str, Any]
    simulation: Simulation
    fleet: dict[str, int] | None = None
    """The static fleet; None for the policies that scale."""
    meets_levels: bool = True
    bound: float = 0.0
    """USD: ``cost_lower_bound`` of the jobs this row admitted (a row that refuses work is judged on what it did)."""
    service: float = 0.0
    """USD: ``service_level_bound`` of the same jobs."""


@dataclass(frozen=True)
class Comparison:
    rows: list[Row]
    lower_bound: float
    """USD: ``bounds.cost_lower_bound`` of the trace; the same with or without pool limits."""
    service_bound: float
    """USD: ``bounds.service_level_bound``: the least a policy keeping standard p95 waits at 30 minutes pays."""

    def row(self, pools: str, policy: str) -> Row | None:
        return next((r for r in self.rows if r.pools == pools and r.policy == policy), None)


def policy_names(choice: str) -> tuple[str, ...]:
    if choice == "all":
        return POLICIES
    if choice not in (*POLICIES, NO_ADMISSION):
        raise LoraTaskError(f"--policy {choice!r} is unknown. Fix: use {', '.join((*POLICIES, NO_ADMISSION))} or all")
    return (choice,)


def compare(jobs: list[TraceJob], calendar: OffPeakCalendar, max_count: dict[str, int], mechanics: Mechanics,
            policies: tuple[str, ...] = POLICIES, pools: tuple[str, ...] = ("unbounded", "bounded")) -> Comparison:
    """Replay ``jobs`` under each policy, unbounded and bounded, on the same cluster ``mechanics``. The static
    fleet is sized against the predictive policy's service levels under the same pool limits, so predictive
    always runs."""
    rows = []

    def predictive(limits: dict[str, int], cluster: Mechanics,
                   late: dict[str, str] | None = DEFAULT_LATE) -> tuple[dict[str, Any], Simulation]:
        return simulate(jobs, PredictivePolicy(PlannerConfig(node_startup=cluster.mean_boot())), calendar, limits,
                        cluster, late)

    for pool, limits in (("unbounded", {}), ("bounded", max_count)):
        if pool not in pools:
            continue
        planned = Row(pool, "predictive", *predictive(limits, mechanics))
        if "static" in policies:
            base = fair_static_fleet(jobs, calendar, limits, mechanics, ServiceLevels.of(planned.report))
            rows.append(Row(pool, "static", base.report, base.simulation, base.fleet, base.meets_levels))
        if "reactive" in policies:
            rows.append(Row(pool, "reactive", *simulate(jobs, ReactivePolicy(), calendar, limits, mechanics)))
        if "predictive" in policies:
            rows.append(planned)
        if "predictive-no-preemption" in policies:
            rows.append(Row(pool, "predictive-no-preemption",
                            *predictive(limits, replace(mechanics, preemption=False))))
        if NO_ADMISSION in policies:
            rows.append(Row(pool, NO_ADMISSION, *predictive(limits, mechanics, None)))
    def admitted(row: Row) -> list[TraceJob]:
        return [j for j in jobs if j.run_id not in row.simulation.refused]

    rows = [replace(r, bound=cost_lower_bound(admitted(r), calendar),
                    service=service_level_bound(admitted(r), calendar)) for r in rows]
    return Comparison(rows, cost_lower_bound(jobs, calendar), service_level_bound(jobs, calendar))


def markdown_table(comparison: Comparison) -> str:
    """The comparison as the README shows it: one line per policy and pool setting, then the bounds."""
    lines = ["| node pools | policy | GPUs (static) | GPU-hours | cost (USD) | cost / lower bound "
             "| cost / service-level bound | interactive wait p50 / p95 (min) | standard p50 / p95 | batch p50 / p95 "
             "| deadline misses (std / batch) | of them promised in time | refused | taken late | unfinished "
             "| preemptions | redone GPU-hours |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in comparison.rows:
        r = row.report
        fleet = "-" if row.fleet is None else " + ".join(f"{n} {gpu}" for gpu, n in sorted(row.fleet.items()))
        if not row.meets_levels:
            fleet += " (levels not met)"
        lines.append(
            f"| {row.pools} | {row.policy} | {fleet} | {r['gpu_hours']:.0f} | {r['cost']:.0f} "
            f"| {r['cost'] / row.bound:.2f} | {r['cost'] / row.service:.2f} "
            f"| {r['interactive_wait_p50_min']:.1f} / {r['interactive_wait_p95_min']:.1f} "
            f"| {r['standard_wait_p50_min']:.1f} / {r['standard_wait_p95_min']:.1f} "
            f"| {r['batch_wait_p50_min']:.0f} / {r['batch_wait_p95_min']:.0f} "
            f"| {r['standard_deadline_misses']} / {r['batch_deadline_misses']} | {r['broken_promises']} "
            f"| {r['refused']} | {r['accepted_late']} | {r['unfinished']} "
            f"| {r['preemptions']} | {r['redone_gpu_hours']:.1f} |")
    rest = " - |" * 10
    lines.append(f"| either | lower bound | - | - | {comparison.lower_bound:.0f} | 1.00 "
                 f"| {comparison.lower_bound / comparison.service_bound:.2f} |{rest}")
    lines.append(f"| either | service-level bound | - | - | {comparison.service_bound:.0f} "
                 f"| {comparison.service_bound / comparison.lower_bound:.2f} | 1.00 |{rest}")
    return "\n".join(lines)

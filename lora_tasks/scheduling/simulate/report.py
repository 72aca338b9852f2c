"""What a replay shows: its figures, and the chart of GPUs provisioned and jobs queued over time."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lora_tasks.scheduling.simulate.trace import PRIORITY_ORDER, TraceJob

if TYPE_CHECKING:
    from lora_tasks.scheduling.simulate.engine import Simulation


def summary(sim: Simulation, jobs: list[TraceJob]) -> dict[str, Any]:
    """The figures a replay is judged by: cost, GPU-hours, utilisation, waits, misses, preemptions, admission
    (jobs refused, accepted though predicted late, and misses among those promised in time)."""
    refused = len(sim.refused)
    unfinished = len(jobs) - sim.finished - refused  # still queued or running when the replay ended

    def pct(values: list[float], q: float) -> float:
        return float(np.percentile(values, q)) / 60 if values else 0.0

    return {
        "policy": sim.policy.name,
        "jobs": len(jobs),
        "unfinished": unfinished,
        "gpu_hours": sim.provisioned_seconds / 3600,
        "cost": sim.cost,
        "utilisation": sim.busy_seconds / sim.provisioned_seconds if sim.provisioned_seconds else 0.0,
        "batch_off_peak_share": sim.batch_off_peak_seconds / sim.batch_seconds if sim.batch_seconds else 0.0,
        "preemptions": sim.preemptions,
        "redone_gpu_hours": sim.redone_seconds / 3600,
        "refused": refused,
        "accepted_late": sum(sim.accepted_late.values()),
        "broken_promises": sim.broken_promises,
        **{f"{p}_wait_p50_min": pct(sim.waits[p], 50) for p in PRIORITY_ORDER},
        **{f"{p}_wait_p95_min": pct(sim.waits[p], 95) for p in PRIORITY_ORDER},
        **{f"{p}_deadline_misses": sim.misses[p] for p in PRIORITY_ORDER},
    }


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

"""What a replay shows: the chart of GPUs provisioned and jobs queued over time."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lora_tasks.scheduling.simulate.engine import Simulation


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

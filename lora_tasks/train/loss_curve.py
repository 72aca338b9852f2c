"""The training loss against the step, drawn from the trainer's ``metrics.jsonl`` for the eval report.

One step's loss is noisy (one batch, one random timestep), so a running mean is drawn over it.
Matplotlib is used through ``Figure`` (the Agg canvas), never pyplot: no global backend, no display.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

FIGSIZE = (6.4, 4.0)
DPI = 100
"""The PNG is 640 x 400 pixels."""


def training_losses(metrics: Path) -> list[tuple[int, float]]:
    """(step, loss) of each whole record; a torn last line (a killed run) or a non-finite loss is skipped."""
    points = []
    for line in metrics.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
            step, loss = int(record["step"]), float(record["loss"])
        except (ValueError, KeyError, TypeError):
            continue
        if math.isfinite(loss):
            points.append((step, loss))
    return sorted(points)


def plot_loss_curve(metrics: Path, out: Path) -> dict[str, Any]:
    """Write ``out`` (PNG) and return its figures, or, without usable metrics, ``file: None`` and a note why."""
    if not metrics.is_file():
        return {"file": None, "note": f"no loss curve: {metrics} does not exist (the trainer writes it; pass "
                                      "--metrics to point at another run's metrics.jsonl)"}
    points = training_losses(metrics)
    if not points:
        return {"file": None, "note": f"no loss curve: {metrics} holds no step with a loss"}
    from matplotlib.figure import Figure

    steps, losses = zip(*points, strict=True)
    window = max(1, len(losses) // 10)
    running = [sum(losses[max(0, i - window + 1):i + 1]) / len(losses[max(0, i - window + 1):i + 1])
               for i in range(len(losses))]
    figure = Figure(figsize=FIGSIZE, dpi=DPI)
    axes = figure.subplots()
    axes.plot(steps, losses, color="tab:blue", alpha=0.35, linewidth=1, label="loss per step")
    axes.plot(steps, running, color="tab:blue", linewidth=2, label=f"running mean of {window}")
    axes.set(xlabel="step", ylabel="denoising loss (MSE)", title="training loss")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, format="png")
    return {"file": out.name, "steps": len(points), "first_loss": losses[0], "last_loss": losses[-1],
            "min_loss": min(losses)}

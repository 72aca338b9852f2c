"""How long a training run will take on a GPU type, with an interval.

The work is counted, not guessed: ``flops = 3 x forward FLOPs per sample x batch x steps``
(backward costs about twice the forward), from the architecture (``profile.py``), plus the
pixels the VAE encodes once to cache latents (images x resolution², which is also what the
final evaluation decodes) and the optimizer steps (each has a cost of its own: the
optimizer, clipping, the Python around it). A run's seconds are then ``startup + flops /
rate + megapixels x per-megapixel + steps x per-step``:

- cold start (no history for the GPU type): the rate is the GPU table's TFLOPs times an
  efficiency, startup, per-megapixel and per-step costs are defaults, and the interval is wide
  (x0.5-x2);
- with history (``MIN_HISTORY`` finished runs of the type in the ledger): the four
  coefficients are fitted to those runs by non-negative least squares, and the interval
  comes from the fitted runs' relative errors. The "rank 8, batch 4 -> about 1.8 h" rule
  of thumb is what this learns, per installation and per GPU.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lora_tasks.gpu_types import GpuType

MIN_HISTORY = 8
COLD_EFFICIENCY = 0.10
"""Share of a GPU's peak tensor throughput a LoRA step reaches: SD 1.5 at 512 px, batch 4, runs at
about 3 steps a second on an A100 (memory-bound normalisation and attention, the optimizer, Python)."""
COLD_STARTUP_SECONDS = 60.0
COLD_SECONDS_PER_MEGAPIXEL = 0.2
COLD_SECONDS_PER_STEP = 0.02


@dataclass(frozen=True)
class Workload:
    """What a run will compute: the features the ledger keeps for each run."""

    flops: float
    images: int
    steps: int = 0
    """Optimizer steps (0 in ledger rows written before steps were recorded)."""
    resolution: int = 512

    @classmethod
    def of(cls, forward_flops_per_sample: float, batch_size: int, accumulation: int, steps: int,
           images: int, resolution: int) -> Workload:
        return cls(3.0 * forward_flops_per_sample * batch_size * accumulation * steps, images, steps, resolution)

    @classmethod
    def from_features(cls, features: dict[str, float]) -> Workload:
        """The workload a ledger row's features describe."""
        return cls(features["flops"], int(features["images"]), int(features.get("steps", 0)),
                   int(features.get("resolution", 512)))

    def terms(self) -> list[float]:
        """The quantities the coefficients multiply: 1, TFLOPs, megapixels cached, steps."""
        return [1.0, self.flops / 1e12, self.images * self.resolution**2 / 1e6, float(self.steps)]


@dataclass(frozen=True)
class Prediction:
    seconds: float
    low: float
    high: float
    source: str


@dataclass(frozen=True)
class Coefficients:
    startup: float
    seconds_per_tflop: float
    seconds_per_megapixel: float
    seconds_per_step: float
    error_low: float
    error_high: float
    """Relative error quantiles (5th and 95th percentile) of the fit: the interval."""
    source: str

    def predict(self, work: Workload) -> Prediction:
        rates = (self.startup, self.seconds_per_tflop, self.seconds_per_megapixel, self.seconds_per_step)
        seconds = sum(rate * term for rate, term in zip(rates, work.terms(), strict=True))
        return Prediction(seconds, seconds * (1 + self.error_low), seconds * (1 + self.error_high), self.source)


def cold_start(gpu: GpuType) -> Coefficients:
    rate = max(gpu.tflops, 1e-6) * COLD_EFFICIENCY  # TFLOP/s actually achieved
    return Coefficients(COLD_STARTUP_SECONDS, 1.0 / rate, COLD_SECONDS_PER_MEGAPIXEL, COLD_SECONDS_PER_STEP, -0.5, 1.0,
                        "cold-start")


def fit(history: Sequence[tuple[Workload, float]]) -> Coefficients:
    """Fit startup, seconds per TFLOP, per megapixel and per step to (workload, actual seconds) pairs."""
    from scipy.optimize import nnls

    design = np.array([w.terms() for w, _ in history])
    actual = np.array([seconds for _, seconds in history])
    weights = 1.0 / actual  # minimise relative, not absolute, error: short runs count as much as long ones
    coefficients, _ = nnls(design * weights[:, None], actual * weights)
    relative = design @ coefficients / actual - 1
    low, high = np.quantile(relative, [0.05, 0.95])
    return Coefficients(*coefficients, float(low), float(high), f"history ({len(history)} runs)")


class DurationModel:
    """Per GPU type: fitted on its history when there is enough, cold start otherwise."""

    def __init__(self, gpu_types: dict[str, GpuType], history: dict[str, list[tuple[Workload, float]]]) -> None:
        self.coefficients = {name: fit(history[name]) if len(history.get(name, [])) >= MIN_HISTORY
                             else cold_start(gpu) for name, gpu in gpu_types.items()}

    def predict(self, gpu_type: str, work: Workload) -> Prediction:
        return self.coefficients[gpu_type].predict(work)


def held_out(run_ids: Sequence[str], share: float = 0.3) -> set[str]:
    """A stable choice of runs kept out of fitting (by hash of the run id)."""
    ranked = sorted(run_ids, key=lambda r: hashlib.sha256(r.encode()).hexdigest())
    return set(ranked[: max(1, round(len(ranked) * share))])


def median_absolute_percentage_error(pairs: Sequence[tuple[float, float]]) -> float:
    """Median of |predicted - actual| / actual over (predicted, actual) pairs."""
    return float(np.median([abs(p - a) / a for p, a in pairs]))

"""The duration predictor: cold start from the GPU table, fits on history, error measures."""

from __future__ import annotations

import random

import pytest

from lora_tasks.gpu_types import GpuType
from lora_tasks.scheduling.duration import (
    MIN_HISTORY,
    DurationModel,
    Workload,
    cold_start,
    fit,
    held_out,
    median_absolute_percentage_error,
)

A100 = GpuType("a100-80g", 79, 312, True, 8)
H100 = GpuType("h100-80g", 79, 989, True, 4)


def test_cold_start_scales_with_work_and_gpu_speed() -> None:
    work = Workload.of(8e11, batch_size=4, accumulation=1, steps=1500, images=40, resolution=512)
    assert work.flops == pytest.approx(3 * 8e11 * 4 * 1500)
    on_a100, on_h100 = cold_start(A100).predict(work), cold_start(H100).predict(work)
    assert on_h100.seconds < on_a100.seconds
    assert on_a100.low < on_a100.seconds < on_a100.high and on_a100.source == "cold-start"
    assert 300 < on_a100.seconds < 1200  # SD 1.5 at 512 px, batch 4, 1500 steps: about 3 steps a second on an A100


def test_fit_recovers_the_machine_and_its_interval() -> None:
    rng = random.Random(0)
    truth = (45.0, 3.0, 0.2, 0.05)  # startup s, s per TFLOP, s per megapixel cached, s per step
    history = []
    for _ in range(40):
        work = Workload(rng.uniform(5e13, 5e15), rng.randrange(10, 400), rng.randrange(200, 4000),
                        rng.choice([512, 768, 1024]))
        seconds = sum(t * x for t, x in zip(truth, work.terms(), strict=True)) * rng.uniform(0.95, 1.05)
        history.append((work, seconds))
    coefficients = fit(history)
    assert coefficients.seconds_per_tflop == pytest.approx(3.0, rel=0.1)
    assert coefficients.seconds_per_step == pytest.approx(0.05, rel=0.3)
    assert -0.1 < coefficients.error_low < 0 < coefficients.error_high < 0.1
    model = DurationModel({"a100-80g": A100, "h100-80g": H100}, {"a100-80g": history})
    assert model.coefficients["a100-80g"].source.startswith("history")
    assert model.coefficients["h100-80g"].source == "cold-start"  # no history for it yet


def test_cold_start_below_the_history_threshold() -> None:
    few = [(Workload(1e14, 10), 100.0)] * (MIN_HISTORY - 1)
    assert DurationModel({"a100-80g": A100}, {"a100-80g": few}).coefficients["a100-80g"].source == "cold-start"
    assert DurationModel({"a100-80g": A100}, {}).predict("a100-80g", Workload(1e14, 10)).seconds > 0


def test_error_measures() -> None:
    assert median_absolute_percentage_error([(110, 100), (90, 100), (100, 100)]) == pytest.approx(0.10)
    runs = [f"run-{i}" for i in range(20)]
    assert held_out(runs) == held_out(list(reversed(runs))) and len(held_out(runs)) == 6


def test_ledger_rows_without_steps_still_count() -> None:
    assert Workload.from_features({"flops": 2e12, "images": 10}) == Workload(2e12, 10, 0, 512)
    assert Workload.from_features({"flops": 2e12, "images": 10, "steps": 50, "resolution": 1000}).terms() == \
        [1.0, 2.0, 10.0, 50.0]

"""The duration predictor on a history of real runs: median absolute percentage error.

Runs a campaign of short training jobs on this machine (the ``cpu`` GPU type: tiny models
of two sizes at two resolutions, batch 1-4, rank 4-16, 5-60 steps, 6-24 images), each in a fresh
process as the local runner does, and records each in a ledger like production runs
(workload features, then the attempt's wall time). Then holds out 30% of the runs (by run
id), fits ``DurationModel`` on the rest and reports the error on the held-out runs, next
to the cold-start estimate's. The last line is ``mape <value>`` (target <= 0.15).

    python bench/duration_predictor.py [--runs 32]
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
IMAGES = (6, 12, 24)
"""Dataset sizes: caching cost grows with them, so they must vary for the fit to tell it from start-up."""


def main() -> int:
    from lora_tasks.gpu_types import load_gpu_types
    from lora_tasks.ledger.store import Ledger, migrate
    from lora_tasks.scheduling.duration import (
        DurationModel,
        Workload,
        cold_start,
        held_out,
        median_absolute_percentage_error,
    )
    from lora_tasks.scheduling.memory import ModelShapes, forward_flops
    from lora_tasks.scheduling.windows import load_calendar
    from lora_tasks.tiny.diffusion import save_pipeline
    from lora_tasks.tiny.sample_data import make_style_dataset

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=32)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="duration-"))
    url = f"sqlite:///{work / 'ledger.db'}"
    migrate(url)
    ledger, calendar = Ledger(url), load_calendar()
    datasets = {n: make_style_dataset(work / f"data-{n}", count=n, seed=0) for n in IMAGES}
    rng = random.Random(7)
    for i in range(args.runs):
        arch, resolution = rng.choice(["tiny", "tiny-m"]), rng.choice([64, 128])
        batch, rank, steps = rng.choice([1, 2, 4]), rng.choice([4, 8, 16]), rng.randrange(5, 61, 5)
        images = rng.choice(IMAGES)
        data = datasets[images]
        model = ROOT / "build" / "bench" / "models" / arch
        if not (model / "model_index.json").exists():
            save_pipeline(model, arch, seed=0)
        flops = forward_flops(ModelShapes.from_folder(model), resolution, rank, TARGETS)
        job = {"model_config": {"base_model": str(model), "lora_rank": rank, "target_modules": list(TARGETS)},
               "training_config": {"batch_size": batch, "resolution": resolution, "bucketing": False,
                                   "max_steps": steps, "save_steps": 1000}}
        config = work / f"run-{i}.yaml"
        config.write_text(yaml.safe_dump(job))
        run_id = f"bench-{i:03d}"
        started = datetime.now(UTC)
        ledger.register_run(run_id, tenant="bench", job=arch, priority="standard", gpu_type="cpu",
                            submitted_at=started)
        workload = Workload.of(flops, batch, 1, steps, images, resolution)
        ledger.record_prediction(run_id, seconds=0, low=0, high=0, peak_bytes=None,
                                 features={"flops": workload.flops, "images": images, "steps": steps,
                                           "resolution": resolution})
        clock = time.perf_counter()
        subprocess.run([sys.executable, "-m", "lora_tasks.train", "--config", str(config), "--dataset", str(data),
                        "--output", str(work / f"out-{i}"), "--device", "cpu"], check=True, capture_output=True)
        finished = datetime.fromtimestamp(started.timestamp() + time.perf_counter() - clock, UTC)
        ledger.attempt_finished(run_id, 1, started_at=started, finished_at=finished, succeeded=True,
                                peak_bytes=None, calendar=calendar)
    runs = ledger.runs(statuses=("success",))
    testing = held_out([r.run_id for r in runs])
    pairs = [(r.run_id, Workload.from_features(r.features), r.actual_seconds) for r in runs]
    history = [(w, s) for run_id, w, s in pairs if run_id not in testing]
    cpu = load_gpu_types(ROOT / "include" / "gpu_types.yaml")["cpu"]
    model = DurationModel({"cpu": cpu}, {"cpu": history})
    fitted = [(model.predict("cpu", w).seconds, s) for run_id, w, s in pairs if run_id in testing]
    cold = [(cold_start(cpu).predict(w).seconds, s) for run_id, w, s in pairs if run_id in testing]
    coefficients = model.coefficients["cpu"]
    print(f"{len(runs)} runs, {len(history)} to fit, {len(fitted)} held out; actual seconds "
          f"{min(s for *_, s in pairs):.1f}-{max(s for *_, s in pairs):.1f}")
    print(f"fitted: startup {coefficients.startup:.1f} s, {coefficients.seconds_per_tflop:.2f} s per TFLOP, "
          f"{coefficients.seconds_per_megapixel:.2f} s per megapixel cached, {coefficients.seconds_per_step:.3f} s per "
          "step; "
          f"90% interval x{1 + coefficients.error_low:.2f}-x{1 + coefficients.error_high:.2f}")
    print("| predictor | held-out runs | median absolute % error |")
    print("|---|---|---|")
    print(f"| cold start (GPU table) | {len(cold)} | {median_absolute_percentage_error(cold):.1%} |")
    print(f"| fitted on history | {len(fitted)} | {median_absolute_percentage_error(fitted):.1%} |")
    mape = median_absolute_percentage_error(fitted)
    print(f"{'ok  ' if mape <= 0.15 else 'FAIL'} fitted predictor's median absolute error on held-out runs <= 15%")
    print(f"mape {mape:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

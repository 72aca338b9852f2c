"""The memory model against measured peaks of real training runs, in and out of sample.

Each configuration trains for a few steps in a fresh process on this machine's CPU; its
peak (the process's peak RSS, from the trainer's metrics log) is compared with
``estimate_peak_memory`` for the same settings. The model's two calibrated constants
(runtime bytes and activation factor) were fitted on the configurations ``memory.CALIBRATED_ON`` names;
``HELD_OUT`` ones differ in resolution, batch, LoRA rank and model size and were never
used to fit anything, so their error is the model's error on a job it has not seen.
``--fit`` refits the constants on this run's ``fit`` rows (least squares on relative
error), prints them, and adds a column: each held-out row estimated with the refit.

On a GPU, run with ``--device cuda``: the measured figure is then
torch's peak allocation, which leaves out the CUDA context and the allocator's slack, so
it is compared with the estimate without its ``runtime`` part. That part
(GPU_RUNTIME_BYTES) is assumed: measuring it needs the device's own peak (``nvidia-smi``)
beside torch's, which this bench does not read yet.

    python bench/memory_model.py [--fit] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

HELD_OUT = [  # never fitted on: other resolutions, batches, ranks, and each model at a new size
    ("tiny", 96, 3, 4),
    ("tiny-m", 128, 1, 16),
    ("tiny-l", 96, 4, 32),
    ("sd15", 192, 2, 16),
]
TARGETS = ("to_q", "to_k", "to_v", "to_out.0")


def measure(arch: str, resolution: int, batch: int, rank: int, device: str, work: Path) -> int:
    from lora_tasks.tiny.diffusion import save_pipeline
    from lora_tasks.tiny.sample_data import make_style_dataset

    model = ROOT / "build" / "bench" / "models" / arch
    if not (model / "model_index.json").exists():
        save_pipeline(model, arch, seed=0)
    data = work / "data"
    if not data.exists():
        make_style_dataset(data, count=8, seed=0)
    job = {"model_config": {"base_model": str(model), "lora_rank": rank, "target_modules": list(TARGETS)},
           "training_config": {"batch_size": batch, "resolution": resolution, "bucketing": False, "max_steps": 3,
                               "save_steps": 1000, "mixed_precision": "no" if device == "cpu" else "auto"}}
    name = f"{arch}-{resolution}-b{batch}-r{rank}"
    spec = work / f"{name}.yaml"
    spec.write_text(yaml.safe_dump(job))
    out = work / f"out-{name}"
    subprocess.run([sys.executable, "-m", "lora_tasks.train", "--config", str(spec), "--dataset", str(data),
                    "--output", str(out), "--device", device], check=True, capture_output=True)
    return max(json.loads(line)["peak_memory_bytes"] for line in (out / "metrics.jsonl").read_text().splitlines())


def calibrated_parts(estimate: Any, activation_factor: float) -> tuple[float, float]:
    """(raw activation bytes, bytes that depend on neither constant): what the fit works with."""
    activations = estimate.parts.get("activations", 0)
    return activations / activation_factor, estimate.total_bytes - activations - estimate.parts["runtime"]


def solve(measured: list[int], estimates: list[Any], activation_factor: float) -> tuple[float, float]:
    """Runtime bytes and activation factor that best explain ``measured``: measured = runtime +
    factor x raw activations + everything else, by least squares on the relative error (the
    figure the target is set in; absolute bytes would let the largest model decide alone)."""
    import numpy as np

    raw, rest = map(list, zip(*(calibrated_parts(e, activation_factor) for e in estimates), strict=True))
    weights = 1.0 / np.array(measured, float)
    design = np.column_stack([np.ones(len(estimates)), raw]) * weights[:, None]
    (runtime, factor), *_ = np.linalg.lstsq(design, (np.array(measured, float) - rest) * weights, rcond=None)
    return float(runtime), float(factor)


def refit_estimate(estimate: Any, runtime: float, factor: float, activation_factor: float) -> float:
    """The estimate's bytes with the refit constants in place of the code's."""
    raw, rest = calibrated_parts(estimate, activation_factor)
    return rest + runtime + factor * raw


def main() -> int:
    from lora_tasks.scheduling import memory
    from lora_tasks.scheduling.memory import ModelShapes, TrainingShape, estimate_peak_memory

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fit", action="store_true")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="memory-model-"))
    rows = []
    assert not set(HELD_OUT) & set(memory.CALIBRATED_ON)
    for group, configs in (("fit", memory.CALIBRATED_ON), ("held out", HELD_OUT)):
        for arch, resolution, batch, rank in configs:
            measured = measure(arch, resolution, batch, rank, args.device, work)
            shapes = ModelShapes.from_folder(ROOT / "build" / "bench" / "models" / arch)
            shape = TrainingShape(resolution, batch, "no" if args.device == "cpu" else "bf16", False, rank, TARGETS,
                                  images=8)
            estimate = estimate_peak_memory(shapes, shape, args.device)
            rows.append((group, arch, resolution, batch, rank, measured, estimate))
    compared = [e.total_bytes - (e.parts["runtime"] if args.device != "cpu" else 0) for *_, e in rows]
    refit = None
    if args.fit:
        fitted = [(m, e) for group, *_, m, e in rows if group == "fit"]
        refit = solve([m for m, _ in fitted], [e for _, e in fitted], memory.ACTIVATION_FACTOR)
        print(f"fit on {len(fitted)} rows: CPU_RUNTIME_BYTES = {refit[0] / 2**30:.3f} GiB, "
              f"ACTIVATION_FACTOR = {refit[1]:.2f} (the code has {memory.CPU_RUNTIME_BYTES / 2**30:.3f} GiB and "
              f"{memory.ACTIVATION_FACTOR:.2f})")
    print("| set | model | px | batch | rank | measured peak | estimate | error |"
          + (" error with this run's refit |" if refit else ""))
    print("|---|---|---|---|---|---|---|---|" + ("---|" if refit else ""))
    worst = {"fit": 0.0, "held out": 0.0}
    for i, (group, arch, resolution, batch, rank, measured, estimate) in enumerate(rows):
        error = compared[i] / measured - 1
        worst[group] = max(worst[group], abs(error))
        extra = ""
        if refit:
            extra = f" {refit_estimate(estimate, *refit, memory.ACTIVATION_FACTOR) / measured - 1:+.1%} |"
        print(f"| {group} | {arch} | {resolution} | {batch} | {rank} | {measured / 2**20:.0f} MiB "
              f"| {compared[i] / 2**20:.0f} MiB | {error:+.1%} |{extra}")
    print(f"{'ok  ' if worst['held out'] <= 0.20 else 'FAIL'} every held-out estimate within 20% of its measured peak")
    print(f"max_error_in_sample {worst['fit']:.3f}")
    print(f"max_error {worst['held out']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

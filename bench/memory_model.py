"""The memory model against measured peaks of real training runs.

Each configuration trains for a few steps in a fresh process on this machine's CPU; its
peak (the process's peak RSS, from the trainer's metrics log) is compared with
``estimate_peak_memory`` for the same settings. ``--fit`` also solves for the two
calibrated constants (runtime bytes and activation factor) by least squares and prints
them, and a leave-one-out error per row: the constants fitted on the other rows, so the
figure is out of sample. On a GPU, run with ``--device cuda``: the measured figure is then
torch's peak allocation, which leaves out the CUDA context and the allocator's slack, so
it is compared with the estimate without its ``runtime`` part; that constant
(GPU_RUNTIME_BYTES) is what ``nvidia-smi``'s peak during the run adds on top.

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

CONFIGS = [  # (architecture, resolution, batch size)
    ("tiny", 64, 2),
    ("tiny-m", 64, 2),
    ("tiny-l", 128, 2),
    ("sd15", 128, 1),
    ("sd15", 256, 1),
]
TARGETS = ("to_q", "to_k", "to_v", "to_out.0")


def measure(arch: str, resolution: int, batch: int, device: str, work: Path) -> int:
    from lora_tasks.tiny.diffusion import save_pipeline
    from lora_tasks.tiny.sample_data import make_style_dataset

    model = ROOT / "build" / "bench" / "models" / arch
    if not (model / "model_index.json").exists():
        save_pipeline(model, arch, seed=0)
    data = work / "data"
    if not data.exists():
        make_style_dataset(data, count=8, seed=0)
    job = {"model_config": {"base_model": str(model), "lora_rank": 8, "target_modules": list(TARGETS)},
           "training_config": {"batch_size": batch, "resolution": resolution, "bucketing": False, "max_steps": 3,
                               "save_steps": 1000, "mixed_precision": "no" if device == "cpu" else "auto"}}
    spec = work / f"{arch}-{resolution}.yaml"
    spec.write_text(yaml.safe_dump(job))
    out = work / f"out-{arch}-{resolution}"
    subprocess.run([sys.executable, "-m", "lora_tasks.train", "--config", str(spec), "--dataset", str(data),
                    "--output", str(out), "--device", device], check=True, capture_output=True)
    return max(json.loads(line)["peak_memory_bytes"] for line in (out / "metrics.jsonl").read_text().splitlines())


def solve(measured: list[int], estimates: list[Any], activation_factor: float) -> tuple[float, float]:
    """Runtime bytes and activation factor that best explain ``measured``: measured = runtime +
    factor x raw activations + everything else, by least squares on the relative error (the
    figure the target is set in; absolute bytes would let the largest model decide alone)."""
    import numpy as np

    raw = [e.parts.get("activations", 0) / activation_factor for e in estimates]
    rest = [e.total_bytes - e.parts.get("activations", 0) - e.parts["runtime"] for e in estimates]
    weights = 1.0 / np.array(measured, float)
    design = np.column_stack([np.ones(len(estimates)), raw]) * weights[:, None]
    (runtime, factor), *_ = np.linalg.lstsq(design, (np.array(measured, float) - rest) * weights, rcond=None)
    return float(runtime), float(factor)


def leave_one_out(measured: list[int], estimates: list[Any], memory: Any) -> list[float]:
    """Each row's error with the constants fitted on the other rows."""
    runtime, factor = solve(measured, estimates, memory.ACTIVATION_FACTOR)
    print(f"fit: CPU_RUNTIME_BYTES = {runtime / 2**30:.3f} GiB, ACTIVATION_FACTOR = {factor:.2f}")
    errors = []
    for i, (m, e) in enumerate(zip(measured, estimates, strict=True)):
        runtime, factor = solve(measured[:i] + measured[i + 1:], estimates[:i] + estimates[i + 1:],
                                memory.ACTIVATION_FACTOR)
        raw = e.parts.get("activations", 0) / memory.ACTIVATION_FACTOR
        predicted = e.total_bytes - e.parts.get("activations", 0) - e.parts["runtime"] + runtime + factor * raw
        errors.append(predicted / m - 1)
    return errors


def main() -> int:
    from lora_tasks.scheduling import memory
    from lora_tasks.scheduling.memory import ModelShapes, TrainingShape, estimate_peak_memory

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fit", action="store_true")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="memory-model-"))
    rows = []
    for arch, resolution, batch in CONFIGS:
        measured = measure(arch, resolution, batch, args.device, work)
        shapes = ModelShapes.from_folder(ROOT / "build" / "bench" / "models" / arch)
        shape = TrainingShape(resolution, batch, "no" if args.device == "cpu" else "bf16", False, 8, TARGETS, images=8)
        estimate = estimate_peak_memory(shapes, shape, args.device)
        rows.append((arch, resolution, batch, measured, estimate))
    compared = [e.total_bytes - (e.parts["runtime"] if args.device != "cpu" else 0) for *_, e in rows]
    out_of_sample = leave_one_out([m for *_, m, _ in rows], [e for *_, e in rows], memory) if args.fit else None
    print("| model | px | batch | measured peak | estimate | error |" + (" leave-one-out error |" if args.fit else ""))
    print("|---|---|---|---|---|---|" + ("---|" if args.fit else ""))
    worst = 0.0
    for i, (arch, resolution, batch, measured, _) in enumerate(rows):
        error = compared[i] / measured - 1
        worst = max(worst, abs(error))
        loo = f" {out_of_sample[i]:+.1%} |" if out_of_sample else ""
        print(f"| {arch} | {resolution} | {batch} | {measured / 2**20:.0f} MiB "
              f"| {compared[i] / 2**20:.0f} MiB | {error:+.1%} |{loo}")
    print(f"max_error {worst:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""How much the trainer costs beyond the bare math of a training step.

For each model (the tiny one, and a Stable Diffusion 1.5-architecture pipeline with random
weights built from the published configs, at 128 px, batch 1), in one process:

- ``bare``: UNet forward + loss + backward + AdamW step on one fixed, pre-encoded batch;
- ``trainer``: ``LoraTrainer.loop`` with cached latents: data order, noise, metrics log,
  progress bar, gradient clipping, LR schedule and periodic checkpoints included;
- ``no cache``: the same trainer re-encoding images and captions every step (the plain
  loop of diffusers' example script).

Rounds of the three are interleaved and medians reported, since these machines are noisy.
After them, the samples the trainer makes during training (``training_config.sample_every_n_steps``):
one prompt at the eval's defaults (20 DPM-Solver++ steps, the training resolution) through
``LoraTrainer._sample``, its median per image beside the step it interrupts, and what sampling
4 prompts every 100 steps adds to a run. The last line is ``ratio <value>``: the larger
trainer/bare median ratio of the two models.

``--device cuda`` runs the SD 1.5 architecture at 512 px, batch 4, bf16 instead, timing
whole rounds between ``torch.cuda.synchronize()`` calls (per-step host times only measure
kernel launches there), and adds images/s and torch's peak allocation for the bare step and
for the trainer, each measured from a reset of the peak.

    python bench/train_overhead.py [--models tiny sd15] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODELS = {
    # device: {arch: (resolution, batch size, rounds, steps per round, checkpoint every)}
    "cpu": {"tiny": (64, 1, 20, 10, 25), "sd15": (128, 1, 8, 2, 10)},
    "cuda": {"sd15": (512, 4, 6, 10, 50)},
}
SAMPLE_CALLS = {"tiny": 5, "sd15": 2}
"""Sampling rounds per model (an SD 1.5 sample at 128 px takes most of a minute on 2 CPU cores)."""
CADENCE = (4, 100)
"""Prompts and steps between samples for the overhead a run sees: kohya-ss users' usual settings."""


def ensure_model(arch: str) -> Path:
    from lora_tasks.tiny.diffusion import save_pipeline

    path = ROOT / "build" / "bench" / "models" / arch
    if not (path / "model_index.json").exists():
        save_pipeline(path, arch, seed=0)
    return path


def synchronize(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_steps(trainer: Any, batch: tuple[Any, Any], count: int) -> list[float]:
    """The irreducible step: forward, loss, backward, optimizer, on the same batch every time.
    On CUDA the round is timed as a whole (one sync at its end), each step its average."""
    import torch

    from lora_tasks.train.loss import denoising_loss

    device = trainer.device
    latents, embeddings = (t.to(device) for t in batch)
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(0)).to(device)
    timesteps = torch.full((latents.shape[0],), 500, dtype=torch.long, device=device)
    unet, scheduler, optimizer = trainer.task.models.unet, trainer.task.models.noise_scheduler, trainer.optimizer
    out = []
    synchronize(device)
    began = time.perf_counter()
    for _ in range(count):
        start = time.perf_counter()
        with trainer._autocast():
            loss = denoising_loss(unet, scheduler, latents, embeddings, noise, timesteps)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        out.append(time.perf_counter() - start)
    synchronize(device)
    return out if device.type != "cuda" else [(time.perf_counter() - began) / count] * count


def measure(arch: str, device: str = "cpu") -> dict[str, Any]:
    """Run in a fresh process per model, so peak memory belongs to that model alone."""
    import torch

    from lora_tasks.spec.loading import parse_job_spec
    from lora_tasks.tiny.sample_data import make_style_dataset
    from lora_tasks.train.cache import Encoder, build_source
    from lora_tasks.train.metrics import MetricsLog, peak_memory_bytes
    from lora_tasks.train.trainer import LoraTrainer

    resolution, batch_size, rounds, per_round, save_steps = MODELS[device][arch]
    work = Path(tempfile.mkdtemp(prefix=f"bench-{arch}-"))
    dataset = make_style_dataset(work / "data", count=8, seed=0)
    spec = parse_job_spec({
        "model_config": {"base_model": str(ensure_model(arch)), "lora_rank": 8},
        "training_config": {"batch_size": batch_size, "resolution": resolution, "bucketing": False,
                            "save_steps": save_steps, "max_steps": 10_000, "learning_rate": 1e-4,
                            "mixed_precision": "bf16" if device == "cuda" else "no",
                            "sample_every_n_steps": 1_000_000, "sample_prompts": ["sks, a teal circle"]},
    })
    trainer = LoraTrainer(spec, dataset, work / "out", device=device)
    prepare_start = time.perf_counter()
    trainer.prepare()
    prepare_seconds = time.perf_counter() - prepare_start
    trainer.metrics = MetricsLog(work / "out" / "metrics.jsonl", 0)
    cached = trainer.task.source
    live = build_source("off", Encoder(trainer.task.models, trainer.device), trainer.task.items, trainer.task.buckets,
                        work / "cache", "")
    batch = cached.batch(trainer.stream.order[0])
    step = 0
    walls: dict[str, list[float]] = {"trainer": [], "no_cache": []}

    def trainer_steps(source: Any, count: int, kind: str = "") -> list[float]:
        """Per-step times from the loop, and the whole call's wall time (a call's last step
        writes its metrics and maybe a checkpoint after its own timer stops)."""
        nonlocal step
        trainer.task.source = source
        synchronize(trainer.device)
        start = time.perf_counter()
        times = trainer.loop(step, step + count)
        synchronize(trainer.device)
        wall = time.perf_counter() - start
        if kind:
            walls[kind].append(wall)
        step += count
        return times if trainer.device.type != "cuda" else [wall / count] * count

    peaks = {}
    for kind, warm_up in (("trainer", lambda: trainer_steps(cached, 3)),  # allocator, first checkpoint folder
                          ("bare", lambda: bare_steps(trainer, batch, 3))):
        if trainer.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(trainer.device)
        warm_up()
        peaks[kind] = peak_memory_bytes(trainer.device)
    results: dict[str, list[float]] = {"trainer": [], "bare": [], "no_cache": []}
    for round_ in range(rounds):  # alternate who goes first, so drift in machine speed cancels
        if round_ % 2:
            results["bare"] += bare_steps(trainer, batch, per_round)
        results["trainer"] += trainer_steps(cached, per_round, "trainer")
        if not round_ % 2:
            results["bare"] += bare_steps(trainer, batch, per_round)
        results["no_cache"] += trainer_steps(live, max(1, per_round // 2), "no_cache")
    samples = [trainer._sample(step) for _ in range(SAMPLE_CALLS.get(arch, 2))]
    trainer.metrics.close()
    records = [json.loads(line) for line in (work / "out" / "metrics.jsonl").read_text().splitlines()]
    return {
        "arch": arch,
        "resolution": resolution,
        "batch": batch_size,
        "unet_params_m": sum(p.numel() for p in trainer.task.models.unet.parameters()) / 1e6,
        "prepare_seconds": prepare_seconds,
        "median": {k: statistics.median(v) for k, v in results.items()},
        "mean": {"bare": statistics.fmean(results["bare"]),
                 **{k: sum(walls[k]) / len(results[k]) for k in walls}},
        "steps": {k: len(v) for k, v in results.items()},
        "sample_seconds": statistics.median(s["sample_seconds"] / len(s["sample_images"]) for s in samples),
        "peak_memory_bytes": max(r["peak_memory_bytes"] for r in records),
        "process_peak_bytes": peak_memory_bytes(trainer.device),
        "peaks": peaks,
        "device": device,
    }


def report(rows: list[dict[str, Any]]) -> None:
    print("| model | UNet params | px | batch | bare step (median) | trainer step (median) | ratio | "
          "trainer mean incl. checkpoints | ratio | no latent cache (median) | ratio | peak memory |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        med, mean = r["median"], r["mean"]
        print(f"| {r['arch']} | {r['unet_params_m']:.1f} M | {r['resolution']} | {r['batch']} "
              f"| {med['bare'] * 1000:.1f} ms | {med['trainer'] * 1000:.1f} ms | {med['trainer'] / med['bare']:.3f} "
              f"| {mean['trainer'] * 1000:.1f} ms | {mean['trainer'] / mean['bare']:.3f} "
              f"| {med['no_cache'] * 1000:.1f} ms | {med['no_cache'] / med['bare']:.3f} "
              f"| {r['peak_memory_bytes'] / 2**20:.0f} MiB |")
    prompts, every = CADENCE
    print(f"\n| model | sample image (median, 20 steps) | in trainer steps | {prompts} prompts every {every} steps "
          "adds |")
    print("|---|---|---|---|")
    for r in rows:
        sample, step = r["sample_seconds"], r["median"]["trainer"]
        print(f"| {r['arch']} | {sample:.2f} s | {sample / step:.1f} | {prompts * sample / (every * step):.1%} |")


def report_cuda(rows: list[dict[str, Any]]) -> None:
    import torch

    print(f"GPU: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, bf16")
    print("| model | px | batch | bare s/step | bare images/s | bare peak (torch) | trainer s/step | trainer images/s "
          "| trainer peak (torch) | ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        med, peaks = r["median"], r["peaks"]
        print(f"| {r['arch']} | {r['resolution']} | {r['batch']} | {med['bare']:.3f} | {r['batch'] / med['bare']:.1f} "
              f"| {peaks['bare'] / 2**30:.1f} GiB | {med['trainer']:.3f} | {r['batch'] / med['trainer']:.1f} "
              f"| {peaks['trainer'] / 2**30:.1f} GiB | {med['trainer'] / med['bare']:.3f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=sorted(MODELS), default="cpu")
    parser.add_argument("--models", nargs="+", choices=["tiny", "sd15"])
    parser.add_argument("--one", choices=["tiny", "sd15"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.device)))
        return 0
    rows = []
    for arch in args.models or list(MODELS[args.device]):
        run = subprocess.run([sys.executable, __file__, "--one", arch, "--device", args.device],
                             capture_output=True, text=True, check=False)
        if run.returncode != 0:
            print(run.stderr, file=sys.stderr)
            return run.returncode
        rows.append(json.loads(run.stdout.strip().splitlines()[-1]))
    report(rows) if args.device == "cpu" else report_cuda(rows)
    ratio = max(r["median"]["trainer"] / r["median"]["bare"] for r in rows)
    print(f"{'ok  ' if ratio <= 1.10 else 'FAIL'} trainer step <= 1.10 x the bare step, every model")
    print(f"ratio {ratio:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

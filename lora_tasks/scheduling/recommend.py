"""Settings that fit a GPU: resolve ``auto``, and refuse a job before it gets a GPU it would exhaust.

    python -m lora_tasks.scheduling.recommend --config job.yaml --gpu a100-80g

``auto`` means: mixed precision bf16 where the GPU has it, else fp16; the largest batch
(1 to 32) that fits in 90% of the GPU's memory without gradient checkpointing, and
checkpointing only when not even batch 1 fits without it. A job whose explicit settings
do not fit is refused with the estimate and the change that would make it fit.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from lora_tasks.cli import entry_point
from lora_tasks.errors import LoraTaskError
from lora_tasks.gpu_types import GpuType, load_gpu_types
from lora_tasks.scheduling.memory import (
    SAMPLE_BATCH,
    MemoryEstimate,
    ModelShapes,
    TrainingShape,
    estimate_peak_memory,
)

if TYPE_CHECKING:
    from lora_tasks.scheduling.text_memory import TextShape
from lora_tasks.spec.base_model import locate_base_model, resolve_base_model
from lora_tasks.spec.loading import load_job_spec
from lora_tasks.spec.schema import JobSpec

HEADROOM = 0.9
BATCH_SIZES = (1, 2, 4, 8, 16, 32)
ASSUMED_IMAGES = 100
"""Dataset size taken before the dataset is scanned (it sizes the latent cache and the epochs)."""


@dataclass(frozen=True)
class Recommendation:
    gpu: str
    shape: TrainingShape | TextShape
    estimate: MemoryEstimate
    fits: bool
    advice: str = ""

    def settings(self) -> dict[str, object]:
        return {"batch_size": self.shape.batch_size, "gradient_checkpointing": self.shape.gradient_checkpointing,
                "mixed_precision": self.shape.precision}


def model_shapes(spec: JobSpec) -> ModelShapes:
    """The base model's network configs; Stable Diffusion 1.5's when they cannot be read here."""
    ref = resolve_base_model(spec.model)
    folder = ref.config if ref.kind == "single_file" else (ref.location if ref.kind == "diffusers" else None)
    if folder and (Path(folder) / "unet" / "config.json").is_file():
        return ModelShapes.from_folder(Path(folder))
    return ModelShapes.assumed_sd15()


def recommend(spec: JobSpec, gpu: GpuType, images: int = ASSUMED_IMAGES,
              shapes: ModelShapes | None = None) -> Recommendation:
    """Concrete settings for ``gpu``, with their memory estimate and whether they fit."""
    if spec.job.task == "text":
        from lora_tasks.scheduling.text_memory import model_config, recommend_text

        return recommend_text(spec, gpu, model_config(locate_base_model(spec).location))
    shapes = shapes or model_shapes(spec)
    training = spec.training
    device = "cuda" if gpu.is_gpu else "cpu"
    precision = training.mixed_precision
    if precision == "auto":
        precision = ("bf16" if gpu.bf16 else "fp16") if gpu.is_gpu else "no"
    sampled = training.sample_every_n_steps is not None
    prompts = len(training.sample_prompts) if training.sample_prompts else spec.eval.max_prompts
    base = TrainingShape(training.resolution, training.batch_size if training.batch_size != "auto" else 1, precision,
                         training.gradient_checkpointing is True, spec.model.lora_rank,
                         tuple(spec.model.target_modules), images, training.latent_cache,
                         (spec.eval.sample_size or training.resolution) if sampled else None,
                         min(SAMPLE_BATCH, prompts) if sampled else 0)
    budget = gpu.memory_bytes * HEADROOM

    def estimate(shape: TrainingShape) -> MemoryEstimate:
        return estimate_peak_memory(shapes, shape, device)

    if not gpu.is_gpu:  # the local CPU runner: no device limit to respect
        return Recommendation(gpu.name, base, estimate(base), True)
    checkpointing = [training.gradient_checkpointing] if training.gradient_checkpointing != "auto" else [False, True]
    batches = [training.batch_size] if training.batch_size != "auto" else list(BATCH_SIZES)
    for ckpt in checkpointing:
        fitting = [replace(base, batch_size=b, gradient_checkpointing=ckpt) for b in batches
                   if estimate(replace(base, batch_size=b, gradient_checkpointing=ckpt)).total_bytes <= budget]
        if fitting:
            chosen = max(fitting, key=lambda s: s.batch_size)
            return Recommendation(gpu.name, chosen, estimate(chosen), True)
    wanted = replace(base, gradient_checkpointing=checkpointing[-1])
    return Recommendation(gpu.name, wanted, estimate(wanted), False, _advice(shapes, wanted, gpu, budget, device))


def _advice(shapes: ModelShapes, shape: TrainingShape, gpu: GpuType, budget: float, device: str) -> str:
    """The smallest change that fits: checkpointing, then a smaller batch, then a lower resolution."""
    options = [("gradient_checkpointing: true", replace(shape, gradient_checkpointing=True))]
    options += [(f"batch_size: {b} with gradient_checkpointing: true",
                 replace(shape, batch_size=b, gradient_checkpointing=True)) for b in (1, 2, 4) if b < shape.batch_size]
    options += [(f"resolution: {r} with batch_size: 1 and gradient_checkpointing: true",
                 replace(shape, resolution=r, batch_size=1, gradient_checkpointing=True))
                for r in (768, 640, 512, 384, 256) if r < shape.resolution]
    for text, option in options:
        estimate = estimate_peak_memory(shapes, option, device)
        if estimate.total_bytes <= budget:
            return f"set {text} (estimated {estimate.gib:.1f} GiB), or use a GPU type with more memory"
    return "use a GPU type with more memory"


def check_fits(spec: JobSpec, gpu: GpuType, images: int = ASSUMED_IMAGES) -> Recommendation:
    """The recommendation, or a LoraTaskError naming the estimate and the fix when nothing fits."""
    advice = recommend(spec, gpu, images)
    if not advice.fits:
        raise LoraTaskError(
            f"training_config: estimated peak memory {advice.estimate.describe()} exceeds {gpu.name}'s "
            f"{gpu.memory_gib:.0f} GiB (90% usable). Fix: {advice.advice}"
        )
    return advice


@entry_point
def main(argv: list[str] | None = None) -> int:
    from lora_tasks.settings import platform_settings

    parser = argparse.ArgumentParser(prog="python -m lora_tasks.scheduling.recommend",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--gpu", required=True, help="a GPU type from include/gpu_types.yaml")
    parser.add_argument("--images", type=int, default=ASSUMED_IMAGES, help="dataset size (for the latent cache)")
    args = parser.parse_args(argv)
    types = load_gpu_types(platform_settings().gpu_types_file)
    if args.gpu not in types:
        raise LoraTaskError(f"--gpu {args.gpu!r} is not a GPU type. Fix: use one of {', '.join(types)}")
    advice = recommend(load_job_spec(args.config), types[args.gpu], args.images)
    print(f"{advice.gpu}: estimated peak {advice.estimate.describe()}")
    print("recommended: " + ", ".join(f"{k}={v}" for k, v in advice.settings().items()))
    if not advice.fits:
        print(f"does not fit: {advice.advice}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

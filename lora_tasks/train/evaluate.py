"""Measure a trained adapter on images it never saw, and gate publishing on the result.

The held-out split is chosen by hashing paths, so it is the same on every retry. The
adapter is loaded the way users load it (``pipe.load_lora_weights`` on the exported file),
then the fixed-noise denoising loss on the held-out images is compared with and without
it. A ratio above ``eval.max_loss_ratio`` fails the stage: the adapter is not published.

    python -m lora_tasks.train.evaluate --config job.yaml --adapter ADAPTER_DIR --holdout holdout.jsonl --out DIR
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from lora_tasks.cli import entry_point
from lora_tasks.errors import LoraTaskError
from lora_tasks.spec.loading import load_job_spec
from lora_tasks.spec.schema import JobSpec
from lora_tasks.train.outputs import DIFFUSERS_FILE


class QualityGateError(LoraTaskError):
    """The adapter made held-out images worse than the gate allows."""


def evaluate_adapter(spec: JobSpec, adapter_dir: Path, images: Path, out_dir: Path,
                     device: str | None = None, held_out: bool = True) -> dict[str, Any]:
    """Write ``out_dir/eval_report.json``; raise QualityGateError when the gate fails. ``held_out``
    is False when the dataset was too small to hold images out and ``images`` are training ones:
    the report says so, since such a loss flatters the adapter."""
    import torch
    from diffusers import StableDiffusionPipeline

    from lora_tasks.spec.base_model import resolve_base_model
    from lora_tasks.train.buckets import training_buckets
    from lora_tasks.train.cache import Encoder
    from lora_tasks.train.data import collect_images
    from lora_tasks.train.loss import adapter_effect
    from lora_tasks.train.models import load_models

    models = load_models(resolve_base_model(spec.model))
    target = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    for part in (models.unet, models.vae, models.text_encoder):
        part.to(target)
    items = collect_images(images, spec.dataset)
    buckets = training_buckets([item.size for item in items], spec.training, models.size_divisor)
    encoder = Encoder(models, target)
    batches = [(encoder.images([item], bucket), encoder.captions([item.caption])) for item, bucket in
               zip(items, buckets, strict=True)]
    pipe = StableDiffusionPipeline(vae=models.vae, text_encoder=models.text_encoder, tokenizer=models.tokenizer,
                                   unet=models.unet, scheduler=models.noise_scheduler, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.load_lora_weights(adapter_dir, weight_name=DIFFUSERS_FILE, adapter_name="candidate")
    base, lora = adapter_effect(models.unet, models.noise_scheduler, batches, spec.training.seed)
    ratio = lora / base
    report = {"images": len(items), "held_out": held_out, "base_loss": base, "lora_loss": lora, "loss_ratio": ratio,
              "max_loss_ratio": spec.eval.max_loss_ratio, "passed": ratio <= spec.eval.max_loss_ratio}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "eval_report.json").write_text(json.dumps(report, indent=2, sort_keys=True))
    if not report["passed"]:
        raise QualityGateError(
            f"the adapter raises the held-out denoising loss from {base:.4f} to {lora:.4f} (x{ratio:.3f}, gate "
            f"x{spec.eval.max_loss_ratio}); it is not published. Fix: train fewer steps or with a lower "
            "learning rate, add images, or relax eval.max_loss_ratio"
        )
    return report


@entry_point
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lora_tasks.train.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--adapter", type=Path, required=True, help="the trainer's adapter/ folder")
    parser.add_argument("--holdout", type=Path, required=True, help="manifest of held-out images")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    report = evaluate_adapter(load_job_spec(args.config), args.adapter, args.holdout, args.out)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Measure a trained adapter on images it never saw, show what it does, and gate publishing on the result.

The held-out split is chosen by hashing paths, so it is the same on every retry. The adapter is loaded
the way users load it (``pipe.load_lora_weights`` on the exported file). Figures, all in
``eval_report.json``: the fixed-noise denoising loss on the held-out images with and without it; sample
images for the eval prompts from fixed seeds, base and LoRA side by side in ``sample_grid.png``; the
training loss curve (``loss_curve.png``); with ``eval.clip_model``, a CLIP score per sample. A loss ratio
above ``eval.max_loss_ratio``, or a mean LoRA CLIP score under ``eval.min_clip_score``, fails the stage
with the figures in the message: the adapter is not published. A text job is measured by
:mod:`lora_tasks.train.text_evaluate` instead (held-out perplexity and generations), through the same entry.

    python -m lora_tasks.evaluate --config job.yaml --adapter ADAPTER_DIR --holdout holdout.jsonl --out DIR \\
        [--metrics metrics.jsonl] [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

from lora_tasks.cli import entry_point
from lora_tasks.errors import LoraTaskError
from lora_tasks.spec.loading import load_job_spec
from lora_tasks.spec.schema import JobSpec
from lora_tasks.train.outputs import DIFFUSERS_FILE, METRICS_FILE

log = logging.getLogger(__name__)
REPORT_FILE = "eval_report.json"
GRID_FILE = "sample_grid.png"
CURVE_FILE = "loss_curve.png"
SAMPLES_DIR = "samples"


class QualityGateError(LoraTaskError):
    """The adapter made held-out images worse than the gate allows."""


def evaluate_adapter(spec: JobSpec, adapter_dir: Path, images: Path, out_dir: Path, device: str | None = None,
                     held_out: bool = True, *, metrics: Path | None = None) -> dict[str, Any]:
    """Write the report, samples, grid and loss curve into ``out_dir`` and return the report; raise
    QualityGateError when a gate fails (after writing them). ``held_out`` is False when the dataset was
    too small to hold images out and ``images`` are training ones: the report says so, since such a loss
    flatters the adapter. ``metrics`` defaults to the trainer's log beside ``adapter_dir``."""
    if spec.job.task == "text":
        return _evaluate_text(spec, adapter_dir, images, out_dir, device, held_out,
                              metrics or adapter_dir.parent / METRICS_FILE)
    import torch

    from lora_tasks.spec.base_model import resolve_base_model
    from lora_tasks.train.buckets import training_buckets
    from lora_tasks.train.cache import Encoder
    from lora_tasks.train.data import collect_images
    from lora_tasks.train.loss import adapter_effect
    from lora_tasks.train.models import load_models
    from lora_tasks.train.samples import generate, sample_prompts, sampling_pipeline

    timings = Laps()
    notes: list[str] = []
    models = load_models(resolve_base_model(spec.model))
    target = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    for part in (models.unet, models.vae, models.text_encoder):
        part.to(target)
    items = collect_images(images, spec.dataset)
    buckets = training_buckets([item.size for item in items], spec.training, models.size_divisor)
    encoder = Encoder(models, target)
    compared = min(len(items), spec.eval.max_compare_items)  # the comparison's cost is bounded by the setting
    batches = [(encoder.images([item], bucket), encoder.captions([item.caption])) for item, bucket in
               zip(items[:compared], buckets[:compared], strict=True)]
    pipe = sampling_pipeline(models)
    prompts, why_none = sample_prompts([item.caption for item in items], spec.eval, spec.dataset.trigger_word)
    if why_none:
        notes.append(why_none)
    size = spec.eval.sample_size or spec.training.resolution
    timings.lap("load_s")
    base_images = generate(pipe, prompts, spec.eval, size)  # before the adapter exists: the base model alone
    timings.lap("base_samples_s")
    pipe.load_lora_weights(adapter_dir, weight_name=DIFFUSERS_FILE, adapter_name="candidate")
    base, lora = adapter_effect(models.unet, models.noise_scheduler, batches, spec.training.seed)
    log.info("adapter against the base model on %d of %d held-out images (eval.max_compare_items): %.1f s",
             compared, len(items), timings.lap("loss_s"))
    lora_images = generate(pipe, prompts, spec.eval, size)
    timings.lap("lora_samples_s")

    out_dir.mkdir(parents=True, exist_ok=True)
    samples = _write_samples(out_dir, prompts, base_images, lora_images)
    clip = _clip_scores(spec.eval.clip_model, samples, [p.bare for p in prompts], (base_images, lora_images),
                        target, notes)
    timings.lap("clip_s")
    curve = loss_curve(metrics or adapter_dir.parent / METRICS_FILE, out_dir, notes)
    timings.lap("loss_curve_s")
    if not held_out:
        notes.append("the dataset was too small to hold images out: the losses are on training images, which "
                     "flatters the adapter")
    ratio = lora / base
    gates = _gates(spec, ratio, clip)
    timings["total_s"] = round(sum(timings.values()), 3)
    report = {
        "images": len(items), "compared_images": compared, "held_out": held_out, "base_loss": base,
        "lora_loss": lora, "loss_ratio": ratio,
        "max_loss_ratio": spec.eval.max_loss_ratio, "min_clip_score": spec.eval.min_clip_score,
        "clip_model": spec.eval.clip_model, "clip_score": clip,
        "sampling": {"steps": spec.eval.sample_steps, "guidance": spec.eval.sample_guidance, "size": size,
                     "scheduler": type(pipe.scheduler).__name__, "seed": spec.eval.seed},
        "samples": samples, "sample_grid": GRID_FILE if samples else None, "loss_curve": curve,
        "gates": gates, "timings": dict(timings), "notes": notes, "passed": all(g["passed"] for g in gates.values()),
    }
    (out_dir / REPORT_FILE).write_text(json.dumps(report, indent=2, sort_keys=True))
    if not report["passed"]:
        raise QualityGateError(_gate_message(report))
    return report


def _evaluate_text(spec: JobSpec, adapter_dir: Path, dataset: Path, out_dir: Path, device: str | None,
                   held_out: bool, metrics: Path) -> dict[str, Any]:
    """The text job's evaluation: held-out perplexity and generations (lora_tasks.train.text_evaluate)."""
    from lora_tasks.train.text_evaluate import evaluate_text_adapter, gate_message

    del held_out  # text is held out by record, decided by the text evaluation itself
    report = evaluate_text_adapter(spec, adapter_dir, dataset, out_dir, device, metrics)
    if not report["passed"]:
        raise QualityGateError(gate_message(report))
    return report


class Laps(dict[str, float]):
    """Seconds of each part of the evaluation, by name, for the report."""

    def __init__(self) -> None:
        super().__init__()
        self._last = time.perf_counter()

    def lap(self, name: str) -> float:
        """Record the seconds since the last lap under ``name`` and return them."""
        now = time.perf_counter()
        self[name], self._last = round(now - self._last, 3), now
        return self[name]


def _write_samples(out_dir: Path, prompts: list[Any], base: list[Any], lora: list[Any]) -> list[dict[str, Any]]:
    """samples/base_XX.png and lora_XX.png per prompt, and the grid of them all."""
    from lora_tasks.train.sample_grid import sample_grid

    folder = out_dir / SAMPLES_DIR
    folder.mkdir(exist_ok=True)
    entries = []
    for index, (prompt, base_image, lora_image) in enumerate(zip(prompts, base, lora, strict=True)):
        names = {"base": f"{SAMPLES_DIR}/base_{index:02d}.png", "lora": f"{SAMPLES_DIR}/lora_{index:02d}.png"}
        base_image.save(out_dir / names["base"])
        lora_image.save(out_dir / names["lora"])
        entries.append({"index": index, "prompt": prompt.text, "seed": prompt.seed,
                        "with_trigger": prompt.with_trigger, **names})
    if prompts:
        sample_grid(base, lora, [p.text for p in prompts]).save(out_dir / GRID_FILE)
    return entries


def _clip_scores(clip_model: str | None, samples: list[dict[str, Any]], texts: list[str],
                 images: tuple[list[Any], list[Any]], device: Any, notes: list[str]) -> dict[str, float] | None:
    """Per sample (into ``samples``) and the means of the base and LoRA images; None, with a note, without
    a CLIP model or samples. ``texts`` are the prompts without the trigger word, a word CLIP never learned."""
    if clip_model is None:
        notes.append("no CLIP score: eval.clip_model is not set")
        return None
    if not samples:
        notes.append("no CLIP score: no sample images were made")
        return None
    from lora_tasks.train.clip_score import ClipScorer

    scorer = ClipScorer(clip_model, device)
    for sample, text in zip(samples, texts, strict=True):
        sample["clip_text"] = text
    for key, row in zip(("base", "lora"), images, strict=True):
        for sample, score in zip(samples, scorer.scores(row, texts), strict=True):
            sample[f"clip_{key}"] = score
    return {key: round(sum(s[f"clip_{key}"] for s in samples) / len(samples), 4) for key in ("base", "lora")}


def loss_curve(metrics: Path, out_dir: Path, notes: list[str]) -> dict[str, Any]:
    from lora_tasks.train.loss_curve import plot_loss_curve

    curve = plot_loss_curve(metrics, out_dir / CURVE_FILE)
    if curve["file"] is None:
        notes.append(curve["note"])
    return curve


def _gates(spec: JobSpec, ratio: float, clip: dict[str, float] | None) -> dict[str, dict[str, Any]]:
    """Each configured gate: its value, its limit, whether it passed."""
    gates = {"max_loss_ratio": {"value": ratio, "limit": spec.eval.max_loss_ratio,
                                "passed": ratio <= spec.eval.max_loss_ratio}}
    if spec.eval.min_clip_score is not None:
        value = clip["lora"] if clip else None
        gates["min_clip_score"] = {"value": value, "limit": spec.eval.min_clip_score,
                                   "passed": value is not None and value >= spec.eval.min_clip_score}
    return gates


def _gate_message(report: dict[str, Any]) -> str:
    gates, failed = report["gates"], []
    if not gates["max_loss_ratio"]["passed"]:
        failed.append(f"the adapter raises the held-out denoising loss from {report['base_loss']:.4f} to "
                      f"{report['lora_loss']:.4f} (x{report['loss_ratio']:.3f}, gate x{report['max_loss_ratio']})")
    clip_gate = gates.get("min_clip_score", {"passed": True})
    if not clip_gate["passed"]:
        clip = report["clip_score"]
        figures = (f"{clip['lora']:.2f} (base model {clip['base']:.2f})" if clip else
                   "not measured (no sample images were made)")
        failed.append(f"the LoRA samples' mean CLIP score is {figures}, under the gate eval.min_clip_score "
                      f"{clip_gate['limit']} (held-out loss {report['base_loss']:.4f} -> {report['lora_loss']:.4f})")
    return ("; ".join(failed) + "; it is not published. Fix: train fewer steps or with a lower learning rate, add "
            "images, or relax the gate (eval.max_loss_ratio, eval.min_clip_score)")


@entry_point
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lora_tasks.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--adapter", type=Path, required=True, help="the trainer's adapter/ folder")
    parser.add_argument("--holdout", type=Path, required=True,
                        help="manifest (or folder) of held-out images; for a text job, its dataset (records are "
                        "held out by content, as the trainer held them out)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--metrics", type=Path, help=f"the trainer's log; default ADAPTER_DIR/../{METRICS_FILE}")
    parser.add_argument("--device", help="torch device, e.g. cuda or cpu; default cuda when there is one")
    args = parser.parse_args(argv)
    report = evaluate_adapter(load_job_spec(args.config), args.adapter, args.holdout, args.out, args.device,
                              metrics=args.metrics)
    print(json.dumps(report, indent=2))
    return 0

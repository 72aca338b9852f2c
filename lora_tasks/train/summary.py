"""The figures of a run's training_summary.json that come from its metrics records and its LoRA: what the
card, the registry, the billing and the CLI read back, so each is what the run really did."""

from __future__ import annotations

from typing import Any

import torch


def lora_size(module: torch.nn.Module, trainable: dict[str, torch.nn.Parameter]) -> dict[str, Any]:
    """The LoRA's trainable parameters and their share of the base model's (the adapter's own excluded)."""
    lora = sum(p.numel() for p in trainable.values())
    model = sum(p.numel() for p in module.parameters()) - lora
    return {"parameters": lora, "model_parameters": model, "share": lora / model}


def record_figures(records: list[dict[str, Any]], accumulation: int) -> dict[str, Any]:
    """From the metrics records: the loss at the start and the end (means of the first and last tenth), the
    batch size the micro-batches really had, the median step, the peak memory and the samples made."""
    tenth = max(1, len(records) // 10)
    losses = [r["loss"] for r in records]
    seconds = sorted(r["step_seconds"] for r in records)
    micro_batches = sum(r["steps"] for r in records) * accumulation
    return {
        "mean_batch_size": sum(r["samples_trained"] for r in records) / micro_batches if records else None,
        "train_loss": {"first": _mean(losses[:tenth]), "last": _mean(losses[-tenth:])},
        "median_step_seconds": seconds[len(seconds) // 2] if seconds else None,
        **_sampling(records),
        "peak_memory_bytes": max((r["peak_memory_bytes"] for r in records), default=0),
    }


def _sampling(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The samples made during training and their time, which the step times leave out."""
    sampled = [r for r in records if "sample_seconds" in r]
    if not sampled:
        return {}
    images = sum(len(r["sample_images"]) for r in sampled)
    seconds = sum(r["sample_seconds"] for r in sampled)
    return {"training_samples": {"steps": [r["step"] for r in sampled], "images": images, "seconds": round(seconds, 3),
                                 "seconds_per_image": round(seconds / images, 3) if images else None}}


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None

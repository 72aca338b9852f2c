"""kohya-ss's ``ss_*`` header fields, so WebUI extensions show what a LoRA was trained on."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from lora_tasks.spec.schema import JobSpec
from lora_tasks.train.buckets import Size
from lora_tasks.train.settings import RunSettings


@dataclass(frozen=True)
class TrainingFacts:
    """What happened in a run, as the header and the summary report it."""

    base_model_name: str
    base_model_sha256: str
    base_model_version: str
    steps: int
    epochs: int
    image_count: int
    dataset_dirs: dict[str, dict[str, int]]
    tag_frequency: dict[str, dict[str, int]]
    bucket_counts: dict[Size, int]
    started_at: datetime
    finished_at: datetime


MODELSPEC_ARCHITECTURES = {"sd_v1": "stable-diffusion-v1", "sd_v1_v": "stable-diffusion-v1",
                           "sd_v2": "stable-diffusion-v2-512", "sd_v2_v": "stable-diffusion-v2-768-v"}
"""modelspec.architecture of each ss_base_model_version, as kohya-ss names them."""


def base_model_version(unet_config: Any, prediction_type: str) -> str:
    """kohya's ss_base_model_version: ``sd_v1`` or ``sd_v2`` (1024-wide cross-attention: SD 2.x's OpenCLIP
    text encoder), with ``_v`` for a v-prediction model, as kohya-ss writes it."""
    version = "sd_v2" if getattr(unet_config, "cross_attention_dim", None) == 1024 else "sd_v1"
    return version + ("_v" if prediction_type == "v_prediction" else "")


def kohya_metadata(spec: JobSpec, settings: RunSettings, facts: TrainingFacts) -> dict[str, str]:
    model, training = spec.model, spec.training
    resolution = f"({training.resolution}, {training.resolution})"
    fields: dict[str, Any] = {
        "ss_output_name": spec.job.name,
        "ss_network_module": "networks.lora",
        "ss_network_dim": model.lora_rank,
        "ss_network_alpha": model.alpha,
        "ss_network_dropout": model.lora_dropout,
        "ss_network_args": json.dumps({"target_modules": model.target_modules}),
        "ss_base_model_version": facts.base_model_version,
        "ss_v2": facts.base_model_version.startswith("sd_v2"),  # what AUTOMATIC1111's version detection reads
        "ss_v_parameterization": facts.base_model_version.endswith("_v"),
        "ss_sd_model_name": facts.base_model_name,
        "ss_new_sd_model_hash": facts.base_model_sha256,
        "ss_resolution": resolution,
        "ss_enable_bucket": training.bucketing,
        "ss_bucket_info": json.dumps({
            "buckets": {str(i): {"resolution": list(size), "count": count}
                        for i, (size, count) in enumerate(sorted(facts.bucket_counts.items()))},
        }),
        "ss_num_train_images": facts.image_count,
        "ss_dataset_dirs": json.dumps(facts.dataset_dirs),
        "ss_tag_frequency": json.dumps(facts.tag_frequency),
        "ss_max_train_steps": facts.steps,
        "ss_steps": facts.steps,
        "ss_num_epochs": facts.epochs,
        "ss_epoch": facts.epochs,
        "ss_batch_size_per_device": settings.batch_size,
        "ss_gradient_accumulation_steps": training.gradient_accumulation_steps,
        "ss_gradient_checkpointing": settings.gradient_checkpointing,
        "ss_learning_rate": training.learning_rate,
        "ss_unet_lr": training.learning_rate,
        "ss_text_encoder_lr": 0.0,
        "ss_lr_scheduler": training.lr_scheduler,
        "ss_lr_warmup_steps": training.lr_warmup_steps,
        "ss_optimizer": "torch.optim.AdamW",
        "ss_max_grad_norm": training.max_grad_norm,
        "ss_mixed_precision": settings.precision,
        "ss_cache_latents": training.latent_cache != "off",
        "ss_caption_dropout_rate": spec.dataset.caption_dropout,
        "ss_seed": training.seed,
        "ss_training_started_at": facts.started_at.timestamp(),
        "ss_training_finished_at": facts.finished_at.timestamp(),
        "modelspec.sai_model_spec": "1.0.0",
        "modelspec.architecture": f"{MODELSPEC_ARCHITECTURES[facts.base_model_version]}/lora",
        "modelspec.prediction_type": "v" if facts.base_model_version.endswith("_v") else "epsilon",
        "modelspec.implementation": "diffusers",
        "modelspec.title": spec.job.name,
        "modelspec.resolution": f"{training.resolution}x{training.resolution}",
        "modelspec.date": facts.finished_at.astimezone(UTC).isoformat(timespec="seconds"),
    }
    return {key: _text(value) for key, value in fields.items()}


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    return str(value)

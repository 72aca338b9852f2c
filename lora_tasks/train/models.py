"""Load the frozen parts of a Stable Diffusion pipeline and give its UNet a LoRA.

Weights come from safetensors only, unless the spec explicitly allows pickles, which
diffusers then reads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lora_tasks.errors import ModelLoadError
from lora_tasks.scheduling.memory import size_divisor
from lora_tasks.spec.base_model import (
    PICKLE_SUFFIXES,
    BaseModelRef,
    attention_projections,
    refuse_pickle,
    resolve_target_modules,
)
from lora_tasks.spec.schema import ModelSection

log = logging.getLogger(__name__)

METHODS: dict[str, dict[str, Any]] = {"lora": {}, "dora": {"use_dora": True}}
"""LoRA variants as extra LoraConfig arguments: add a line here to support another."""


@dataclass
class DiffusionModels:
    unet: Any
    vae: Any
    text_encoder: Any
    tokenizer: Any
    noise_scheduler: Any

    @property
    def size_divisor(self) -> int:
        return size_divisor(self.vae.config.block_out_channels, self.unet.config.down_block_types)


def load_models(ref: BaseModelRef) -> DiffusionModels:
    """The UNet, VAE, text encoder, tokenizer and training noise scheduler of the base model."""
    try:
        if ref.kind == "single_file":
            return _from_single_file(ref)
        return _from_pretrained(ref)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(
            f"base model {ref.location} could not be loaded: {exc}. Fix: check model_config.base_model points "
            "at a Stable Diffusion 1.x/2.x pipeline (a hub id needs network access or the local hub cache)"
        ) from exc


def _from_pretrained(ref: BaseModelRef) -> DiffusionModels:
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    safetensors_only = {"use_safetensors": None if ref.allow_pickle else True}
    location = ref.location
    if ref.kind == "diffusers" and not ref.allow_pickle:
        _refuse_pickled_components(Path(location))
    return _checked(DiffusionModels(
        unet=UNet2DConditionModel.from_pretrained(location, subfolder="unet", **safetensors_only),
        vae=AutoencoderKL.from_pretrained(location, subfolder="vae", **safetensors_only),
        text_encoder=CLIPTextModel.from_pretrained(location, subfolder="text_encoder", **safetensors_only),
        tokenizer=CLIPTokenizer.from_pretrained(location, subfolder="tokenizer"),
        noise_scheduler=DDPMScheduler.from_pretrained(location, subfolder="scheduler"),
    ))


def _refuse_pickled_components(root: Path) -> None:
    for part in ("unet", "vae", "text_encoder"):
        folder = root / part
        pickles = sorted(p for p in folder.glob("*") if p.suffix in PICKLE_SUFFIXES)
        if pickles and not any(folder.glob("*.safetensors")):
            raise refuse_pickle(pickles[0])


def _from_single_file(ref: BaseModelRef) -> DiffusionModels:
    from diffusers import DDPMScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_single_file(
        ref.location, config=ref.config, safety_checker=None, requires_safety_checker=False
    )
    return _checked(DiffusionModels(
        unet=pipe.unet,
        vae=pipe.vae,
        text_encoder=pipe.text_encoder,
        tokenizer=pipe.tokenizer,
        noise_scheduler=DDPMScheduler.from_config(pipe.scheduler.config),
    ))


def _checked(models: DiffusionModels) -> DiffusionModels:
    if getattr(models.unet.config, "addition_embed_type", None) == "text_time":
        raise ModelLoadError("the base model is SDXL, which this trainer does not support yet. Fix: use a Stable "
                             "Diffusion 1.x or 2.x base model")
    for part in (models.unet, models.vae, models.text_encoder):
        part.requires_grad_(False)
        part.eval()
    return models


def add_lora(unet: Any, model: ModelSection) -> list[str]:
    """Attach a fresh LoRA to the UNet; returns the target modules actually used."""
    from peft import LoraConfig

    layer_names = [name for name, module in unet.named_modules() if isinstance(module, torch.nn.Linear)]
    modules, _ = resolve_target_modules(model.target_modules, layer_names)
    if not attention_projections(layer_names):
        log.warning("the UNet has no attention projections; LoRA goes on %s only", modules)
    unet.add_adapter(LoraConfig(
        r=model.lora_rank,
        lora_alpha=model.alpha,
        lora_dropout=model.lora_dropout,
        init_lora_weights="gaussian",
        target_modules=modules,
        **METHODS[model.method],
    ))
    return modules


def trainable_parameters(unet: Any) -> dict[str, torch.nn.Parameter]:
    return {name: p for name, p in unet.named_parameters() if p.requires_grad}

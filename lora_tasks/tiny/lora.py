"""Random LoRA adapters for a base pipeline, as the trainer exports them (diffusers format), for the
serving tests and bench: many distinct adapters without training each one."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
"""The attention projections the trainer adapts by default."""


def lora_shapes(pipeline_dir: Path) -> dict[str, tuple[int, int]]:
    """(in, out) features of each LoRA target of the pipeline's UNet, by module name."""
    import torch
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(Path(pipeline_dir) / "unet")
    return {name: (m.in_features, m.out_features) for name, m in unet.named_modules()
            if isinstance(m, torch.nn.Linear) and name.endswith(TARGETS)}


def random_lora(shapes: dict[str, tuple[int, int]], seed: int, rank: int = 4) -> dict[str, torch.Tensor]:
    """A diffusers-format UNet LoRA with nonzero up and down weights (peft's init leaves up at zero, which
    changes nothing)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for name, (fan_in, fan_out) in shapes.items():
        state[f"unet.{name}.lora.down.weight"] = torch.randn(rank, fan_in, generator=generator) * 0.3
        state[f"unet.{name}.lora.up.weight"] = torch.randn(fan_out, rank, generator=generator) * 0.3
    return state


def save_random_lora(folder: Path, shapes: dict[str, tuple[int, int]], seed: int, rank: int = 4,
                     alpha: float | None = None) -> Path:
    """Write ``random_lora`` as the trainer writes its diffusers export, its LoRA config (``alpha``, default
    the rank) in the header; returns the weights file."""
    from diffusers import StableDiffusionPipeline
    from diffusers.loaders.lora_base import LORA_WEIGHT_NAME_SAFE
    from peft import LoraConfig

    unet_layers = {k.removeprefix("unet."): v for k, v in random_lora(shapes, seed, rank).items()}
    config = LoraConfig(r=rank, lora_alpha=rank if alpha is None else alpha, target_modules=list(TARGETS))
    StableDiffusionPipeline.save_lora_weights(folder, unet_lora_layers=unet_layers,
                                              unet_lora_adapter_metadata=config.to_dict())
    return Path(folder) / LORA_WEIGHT_NAME_SAFE

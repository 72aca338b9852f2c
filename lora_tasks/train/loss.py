"""The denoising loss: what one training step minimises, and how we measure a LoRA with it."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

EVAL_TIMESTEPS = (100, 300, 500, 700, 900)


def noise_target(noise_scheduler: Any, latents: torch.Tensor, noise: torch.Tensor,
                 timesteps: torch.Tensor) -> torch.Tensor:
    """What the UNet should predict: the noise (epsilon models) or the velocity (v-prediction)."""
    kind = noise_scheduler.config.prediction_type
    if kind == "epsilon":
        return noise
    if kind == "v_prediction":
        return noise_scheduler.get_velocity(latents, noise, timesteps)
    raise ValueError(f"unsupported prediction_type {kind!r} in the base model's scheduler")


def denoising_loss(unet: Any, noise_scheduler: Any, latents: torch.Tensor, embeddings: torch.Tensor,
                   noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    """MSE between the UNet's prediction and its target; dtypes are left to autocast (``unet.dtype``
    walks every module, which costs a fifth of a tiny model's step)."""
    noisy = noise_scheduler.add_noise(latents, noise, timesteps)
    prediction = unet(noisy, timesteps, embeddings, return_dict=False)[0]
    target = noise_target(noise_scheduler, latents, noise, timesteps)
    return F.mse_loss(prediction.float(), target.float())


@torch.no_grad()
def fixed_noise_loss(unet: Any, noise_scheduler: Any, batches: list[tuple[torch.Tensor, torch.Tensor]],
                     seed: int) -> float:
    """Mean loss over the given batches at fixed timesteps and fixed noise: comparable across adapters."""
    generator = torch.Generator().manual_seed(seed)
    total, count = 0.0, 0
    for latents, embeddings in batches:
        for t in EVAL_TIMESTEPS:
            noise = torch.randn(latents.shape, generator=generator).to(latents.device)
            timesteps = torch.full((latents.shape[0],), t, dtype=torch.long, device=latents.device)
            total += denoising_loss(unet, noise_scheduler, latents, embeddings, noise, timesteps).item()
            count += 1
    return total / max(count, 1)


def adapter_effect(unet: Any, noise_scheduler: Any, batches: list[tuple[torch.Tensor, torch.Tensor]],
                   seed: int) -> tuple[float, float]:
    """The fixed-noise loss without the UNet's LoRA and with it, on the same batches: how the adapter
    changes the denoising error (the trainer reports it on training images, evaluate gates on held-out ones)."""
    unet.disable_adapters()
    try:
        base = fixed_noise_loss(unet, noise_scheduler, batches, seed)
    finally:
        unet.enable_adapters()
    return base, fixed_noise_loss(unet, noise_scheduler, batches, seed)

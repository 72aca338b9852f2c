"""Peak training memory, estimated before a GPU is spent on the job.

Peak = frozen weights (in their dtype) + LoRA weights, gradients and AdamW states (fp32,
16 bytes a parameter) + activations (what autograd keeps, read off the architecture by
``profile.py``, times the batch; halved under fp16/bf16 autocast; unit inputs plus one
recomputed unit under gradient checkpointing) + the latent cache + what the process itself
holds. On a GPU the VAE and text encoder leave the device after caching (unless the cache
is off), so the peak is the larger of the caching phase (all three models, the VAE encoding a batch of images) and
the training phase. On a CPU (where the figure is the process's peak RSS) everything
stays in memory.

Two constants are calibrated against measured peaks (``bench/memory_model.py``):
``ACTIVATION_FACTOR`` (backward keeps activation gradients and temporaries beside the
saved tensors) and ``CPU_RUNTIME_BYTES`` (Python, torch and the libraries). On a GPU,
``GPU_RUNTIME_BYTES`` covers the CUDA context and allocator slack that
``torch.cuda.max_memory_allocated`` (the trainer's GPU figure) does not see: the bench with
``--device cuda`` checks everything else against torch's peak, and this constant is the
difference between ``nvidia-smi``'s peak during those runs and torch's. It is an assumed
1 GiB until measured on a GPU.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lora_tasks.scheduling.profile import parameter_count, profile_unet
from lora_tasks.scheduling.sd15 import SD15

ACTIVATION_FACTOR = 1.74
CPU_RUNTIME_BYTES = int(0.475 * 2**30)
CALIBRATED_ON = (("tiny", 64, 2, 8), ("tiny-m", 64, 2, 8), ("tiny-l", 128, 2, 8), ("sd15", 128, 1, 8),
                 ("sd15", 256, 1, 8))
"""(architecture, resolution, batch, LoRA rank) of the CPU runs the two constants above were fitted on;
every other configuration is out of sample (the bench's held-out rows, the tests')."""
GPU_RUNTIME_BYTES = int(1.0 * 2**30)
ENCODE_BATCH = 8
"""Images the trainer encodes at once when caching latents (lora_tasks.train.cache)."""


def size_divisor(vae_block_out_channels: list[int], unet_down_block_types: list[str]) -> int:
    """Image sides must be multiples of this for the VAE and every UNet downsampling."""
    return 2 ** (len(vae_block_out_channels) - 1) * 2 ** (len(unet_down_block_types) - 1)


@dataclass(frozen=True)
class ModelShapes:
    """The configs of a Stable Diffusion pipeline's three networks."""

    unet: dict[str, Any]
    vae: dict[str, Any]
    text_encoder: dict[str, Any]
    assumed: bool = False
    """True when the configs are Stable Diffusion 1.5's, assumed for lack of the real ones."""

    @property
    def vae_factor(self) -> int:
        return 2 ** (len(self.vae["block_out_channels"]) - 1)

    @property
    def size_divisor(self) -> int:
        return size_divisor(self.vae["block_out_channels"], self.unet["down_block_types"])

    @classmethod
    def from_folder(cls, folder: Path) -> ModelShapes:
        def config(part: str) -> dict[str, Any]:
            return json.loads((folder / part / "config.json").read_text())

        return cls(config("unet"), config("vae"), config("text_encoder"))

    @classmethod
    def assumed_sd15(cls) -> ModelShapes:
        return cls(SD15["unet"], SD15["vae"], SD15["text_encoder"], assumed=True)


@dataclass(frozen=True)
class MemoryEstimate:
    total_bytes: int
    parts: dict[str, int] = field(default_factory=dict)

    @property
    def gib(self) -> float:
        return self.total_bytes / 2**30

    def describe(self) -> str:
        parts = ", ".join(f"{name} {value / 2**30:.2f}" for name, value in self.parts.items() if value)
        return f"{self.gib:.2f} GiB ({parts})"


SAMPLE_BATCH = 4
"""Sample prompts denoised and decoded together (by the trainer and the evaluation); fixed, since batching
changes the last bits of the arithmetic."""


@dataclass(frozen=True)
class TrainingShape:
    """The settings that decide memory, with auto values already resolved."""

    resolution: int
    batch_size: int
    precision: str
    gradient_checkpointing: bool
    rank: int
    target_modules: tuple[str, ...]
    images: int = 100
    latent_cache: str = "memory"
    sample_side: int | None = None
    """With training_config.sample_every_n_steps: the side of the samples, decoded ``sample_images`` at once."""
    sample_images: int = 0


def estimate_peak_memory(shapes: ModelShapes, shape: TrainingShape, device: str) -> MemoryEstimate:
    """Peak bytes of a training run: device memory on 'cuda', process RSS on 'cpu'."""
    side = max(1, shape.resolution // shapes.vae_factor)
    profile = profile_unet(shapes.unet, (side, side), shape.rank, shape.target_modules)
    half = shape.precision in {"fp16", "bf16"}
    weight_bytes = 2 if half else 4
    per_sample = profile.checkpointed_bytes if shape.gradient_checkpointing else profile.activation_bytes
    text_params = parameter_count("text_encoder", shapes.text_encoder)
    vae_params = parameter_count("vae", shapes.vae)
    latent_bytes = 4 * side * side * 4
    cache = shape.images * latent_bytes + shape.images * 77 * shapes.text_encoder["hidden_size"] * 4 \
        if shape.latent_cache == "memory" else 0
    training = {
        "unet_weights": profile.unet_params * weight_bytes,
        "lora_state": profile.lora_params * 16,
        "activations": int(per_sample * shape.batch_size * (0.5 if half else 1.0) * ACTIVATION_FACTOR),
    }
    encoders = {"text_encoder": text_params * weight_bytes, "vae": vae_params * 4}
    encoding = int(min(ENCODE_BATCH, shape.images) * 3 * shapes.vae["block_out_channels"][0]
                   * shape.resolution ** 2 * 4)  # three full-resolution feature maps of the first VAE block
    decoding = int(shape.sample_images * 3 * shapes.vae["block_out_channels"][0] * (shape.sample_side or 0) ** 2 * 4)
    if device == "cpu":  # everything stays in RAM; the encoding burst, training and sampling come one at a time
        learning = {"lora_state": training["lora_state"], "activations": training["activations"]}
        burst = max(learning, {"vae_encoding": encoding}, {"lora_state": training["lora_state"],
                                                           "sample_decoding": decoding}, key=lambda p: sum(p.values()))
        parts = {"unet_weights": training["unet_weights"], **encoders, "latent_cache": cache, **burst,
                 "runtime": CPU_RUNTIME_BYTES}
    else:  # with a cache the encoders leave the GPU after caching: the peak is one phase or the other
        train_phase = {**training, "latent_cache": cache, "runtime": GPU_RUNTIME_BYTES}
        if shape.latent_cache == "off":  # they stay, and encode every batch
            train_phase.update(encoders)
        cache_phase = {"unet_weights": training["unet_weights"], **encoders, "vae_encoding": encoding,
                       "runtime": GPU_RUNTIME_BYTES}
        # samples during training bring the encoders back beside the optimizer state, and decode at sample size
        sample_phase = {"unet_weights": training["unet_weights"], "lora_state": training["lora_state"], **encoders,
                        "latent_cache": cache, "sample_decoding": decoding, "runtime": GPU_RUNTIME_BYTES}
        phases = [train_phase, cache_phase, *([sample_phase] if decoding else [])]
        parts = max(phases, key=lambda p: sum(p.values()))
    return MemoryEstimate(sum(parts.values()), parts)


def forward_flops(shapes: ModelShapes, resolution: int, rank: int, targets: tuple[str, ...]) -> int:
    """FLOPs of one UNet forward for one sample at this resolution."""
    side = max(1, resolution // shapes.vae_factor)
    return profile_unet(shapes.unet, (side, side), rank, targets).forward_flops

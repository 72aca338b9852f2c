"""What one training step of a UNet costs, read off the architecture without running it.

The UNet (with its LoRA) is built on PyTorch's ``meta`` device, where tensors have shapes
but no data, and run forward once per shape: a saved-tensor hook adds up what autograd
keeps for the backward pass (the activations), and PyTorch's FLOP counter adds up the
arithmetic. That is exact for any UNet2DConditionModel config, takes a second or two for
Stable Diffusion 1.5 (plus importing torch and diffusers) and allocates nothing. Attention
is counted as the memory-efficient kernels that both CUDA and CPU use (no seq x seq matrix
is kept), not as the textbook formula the meta device would otherwise trace.

Results are kept on disk (``LORA_CACHE_DIR``), keyed by everything they depend on, so
validate_request, which estimates every run's memory, stays light: one measurement per
architecture and shape, not one per run.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import lru_cache
from importlib import metadata
from typing import Any

TEXT_TOKENS = 77
MEASURED_WITH = ("torch", "diffusers", "peft", "transformers", "accelerate")
"""Packages whose versions are part of every cache key: a new version may count differently."""
CACHE_FORMAT = 1
"""Bump when the measuring code changes what it returns."""


def disk_cached(kind: str, key: dict[str, Any], compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``compute()``'s JSON result, kept under ``LORA_CACHE_DIR`` for every process of the platform."""
    from lora_tasks.settings import platform_settings

    versions = {name: metadata.version(name) for name in MEASURED_WITH}
    blob = json.dumps({"kind": kind, "key": key, "versions": versions, "format": CACHE_FORMAT}, sort_keys=True)
    path = platform_settings().cache_dir / "model-profiles" / f"{kind}-{hashlib.sha256(blob.encode()).hexdigest()}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        pass
    value = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")  # concurrent writers each rename a whole file
    partial.write_text(json.dumps(value))
    partial.replace(path)
    return value


@dataclass(frozen=True)
class UNetProfile:
    activation_bytes: int
    """What autograd saves for backward, per sample, in fp32 (no gradient checkpointing)."""
    checkpointed_bytes: int
    """The same with gradient checkpointing: unit inputs, plus the largest unit recomputed."""
    forward_flops: int
    """Per sample."""
    unet_params: int
    lora_params: int


@contextmanager
def memory_efficient_attention() -> Any:
    import torch
    import torch.nn.functional as F

    original = F.scaled_dot_product_attention

    def attention(query: Any, key: Any, value: Any, attn_mask: Any = None, dropout_p: float = 0.0,
                  is_causal: bool = False, scale: float | None = None, **_: Any) -> Any:
        if attn_mask is not None:
            return original(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal,
                            scale=scale)
        return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(query, key, value, dropout_p, is_causal,
                                                                           scale=scale)[0]

    F.scaled_dot_product_attention = attention
    try:
        yield
    finally:
        F.scaled_dot_product_attention = original


def _meta_unet(config: dict[str, Any], rank: int, targets: tuple[str, ...]) -> Any:
    from accelerate import init_empty_weights
    from diffusers import UNet2DConditionModel
    from peft import LoraConfig

    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(config)
    unet.requires_grad_(False)
    unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=list(targets)))
    for name, param in unet.named_parameters():
        param.requires_grad_("lora_" in name)
    return unet


def _inputs(unet: Any, latent_hw: tuple[int, int]) -> tuple[Any, Any, Any]:
    import torch

    height, width = latent_hw
    return (torch.empty(1, unet.config.in_channels, height, width, device="meta"),
            torch.zeros(1, dtype=torch.long, device="meta"),
            torch.empty(1, TEXT_TOKENS, unet.config.cross_attention_dim, device="meta"))


def _saved_bytes(unet: Any, latent_hw: tuple[int, int], checkpointing: bool) -> int:
    """Bytes autograd saves for backward for one sample through the UNet."""
    if checkpointing:
        unet.enable_gradient_checkpointing()
    unet.train()
    with memory_efficient_attention():
        saved = saved_bytes(unet, lambda: unet(*_inputs(unet, latent_hw)))
    if checkpointing:
        unet.disable_gradient_checkpointing()
    return saved


def saved_bytes(model: Any, forward: Callable[[], Any]) -> int:
    """Bytes of the tensors autograd saves for backward while ``forward()`` runs, the model's parameters
    (which backward reads in place) left out."""
    import torch

    params = {id(p) for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(tensor: Any) -> Any:
        base = tensor if tensor._base is None else tensor._base
        if id(base) not in params:
            saved[id(base)] = base.numel() * base.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        forward()
    return sum(saved.values())


def _forward_flops(unet: Any, latent_hw: tuple[int, int]) -> int:
    """FLOPs of one forward, attention included (counted on the textbook formula: the FLOPs are the
    same whichever kernel runs it)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as flops:
        unet(*_inputs(unet, latent_hw))
    return flops.get_total_flops()


@lru_cache(maxsize=64)
def _profile(config_json: str, latent_hw: tuple[int, int], rank: int, targets: tuple[str, ...]) -> UNetProfile:
    key = {"config": config_json, "latent_hw": list(latent_hw), "rank": rank, "targets": list(targets)}
    return UNetProfile(**disk_cached("unet", key, lambda: asdict(_measure(config_json, latent_hw, rank, targets))))


def _measure(config_json: str, latent_hw: tuple[int, int], rank: int, targets: tuple[str, ...]) -> UNetProfile:
    config = json.loads(config_json)
    unet = _meta_unet(config, rank, targets)
    full = _saved_bytes(unet, latent_hw, checkpointing=False)
    kept = _saved_bytes(unet, latent_hw, checkpointing=True)
    flops = _forward_flops(unet, latent_hw)
    largest_unit = max(_block_bytes(unet, latent_hw).values())
    return UNetProfile(
        activation_bytes=full,
        checkpointed_bytes=kept + largest_unit,
        forward_flops=flops,
        unet_params=sum(p.numel() for p in unet.parameters() if not p.requires_grad),
        lora_params=sum(p.numel() for p in unet.parameters() if p.requires_grad),
    )


def _block_bytes(unet: Any, latent_hw: tuple[int, int]) -> dict[str, int]:
    """Saved bytes of each checkpointed unit alone (diffusers checkpoints every resnet and every
    transformer separately): under checkpointing, the largest is recomputed at the peak."""
    import torch
    from diffusers.models.resnet import ResnetBlock2D
    from diffusers.models.transformers.transformer_2d import Transformer2DModel

    params = {id(p) for p in unet.parameters()}
    per_unit: dict[str, int] = {}
    current: list[str] = []

    def pack(tensor: Any) -> Any:
        base = tensor if tensor._base is None else tensor._base
        if current and id(base) not in params:
            per_unit[current[-1]] = per_unit.get(current[-1], 0) + base.numel() * base.element_size()
        return tensor

    def leave(*_: Any) -> None:  # a forward hook's return value would replace the unit's output
        current.pop()

    handles = []
    for name, module in unet.named_modules():
        if isinstance(module, ResnetBlock2D | Transformer2DModel):
            handles.append(module.register_forward_pre_hook(lambda *_, n=name: current.append(n)))
            handles.append(module.register_forward_hook(leave))
    with memory_efficient_attention(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        unet(*_inputs(unet, latent_hw))
    for handle in handles:
        handle.remove()
    return per_unit or {"none": 0}


def profile_unet(config: dict[str, Any], latent_hw: tuple[int, int], rank: int,
                 targets: tuple[str, ...]) -> UNetProfile:
    """Activation memory and FLOPs per sample of a LoRA-wrapped UNet at one latent size."""
    public = {k: v for k, v in config.items() if not k.startswith("_")}
    return _profile(json.dumps(public, sort_keys=True), latent_hw, rank, tuple(targets))


def parameter_count(component: str, config: dict[str, Any]) -> int:
    """Parameters of a VAE or CLIP text encoder config, counted on the meta device (once per config)."""
    public = {k: v for k, v in config.items() if not k.startswith("_")}
    key = {"component": component, "config": json.dumps(public, sort_keys=True)}
    return disk_cached("params", key, lambda: {"count": _count_parameters(component, public)})["count"]


def _count_parameters(component: str, config: dict[str, Any]) -> int:
    from accelerate import init_empty_weights

    with init_empty_weights():
        if component == "vae":
            from diffusers import AutoencoderKL

            model = AutoencoderKL.from_config(config)
        else:
            from transformers import CLIPTextConfig, CLIPTextModel

            model = CLIPTextModel(CLIPTextConfig(**config))
    return sum(p.numel() for p in model.parameters())

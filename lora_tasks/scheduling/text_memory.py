"""Peak training memory and FLOPs of a text job, read off the language model's config without its weights.

As for the UNet (:mod:`lora_tasks.scheduling.profile`), the model is built on PyTorch's ``meta`` device
with its LoRA and run forward once on a full row of tokens: a saved-tensor hook adds up what autograd keeps
for backward (the logits the loss upcasts included) and the FLOP counter the arithmetic. A frozen linear
layer keeps no input (its weight's gradient is never asked for), which is why a LoRA's activations are a
fraction of full fine-tuning's; the meta run sees that exactly.

Peak = frozen weights (in the run's dtype) + LoRA weights, gradients and AdamW states (16 bytes a
parameter) + activations x ``TEXT_ACTIVATION_FACTOR`` (gradients and temporaries beside the saved tensors;
fitted on ``TEXT_CALIBRATED_ON`` by ``bench/text_train.py``, checked there on other shapes) + the runtime.
Rows are taken at ``max_length`` tokens: a padded batch is at most that wide, a packed one is that wide.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from lora_tasks.gpu_types import GpuType
from lora_tasks.scheduling.memory import CPU_RUNTIME_BYTES, GPU_RUNTIME_BYTES, MemoryEstimate
from lora_tasks.scheduling.profile import disk_cached, memory_efficient_attention, saved_bytes
from lora_tasks.scheduling.recommend import BATCH_SIZES, HEADROOM, Recommendation
from lora_tasks.spec.schema import JobSpec

TEXT_ACTIVATION_FACTOR = 2.1
TEXT_CALIBRATED_ON = (("llm-s", 256, 4, 8), ("llm-m", 256, 2, 8))
"""(architecture, tokens a row, batch, LoRA rank) of the CPU runs the factor was fitted on."""
LLAMA_2_7B = {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32,
              "num_key_value_heads": 32, "vocab_size": 32000, "max_position_embeddings": 4096,
              "model_type": "llama", "architectures": ["LlamaForCausalLM"]}
"""Assumed when a hub model's config cannot be read here (its public config values)."""


@dataclass(frozen=True)
class TextShape:
    """The settings that decide a text job's memory, auto values resolved."""

    tokens: int
    """Per row."""
    batch_size: int
    precision: str
    gradient_checkpointing: bool
    rank: int
    target_modules: tuple[str, ...]


@dataclass(frozen=True)
class TextProfile:
    activation_bytes: int
    """Saved for backward per row of ``tokens``, in fp32, without gradient checkpointing."""
    checkpointed_bytes: int
    forward_flops: int
    """Per row."""
    model_params: int
    lora_params: int


def model_config(location: str) -> dict[str, Any]:
    """The language model's config.json; Llama-2-7B's when it is not on this machine (a hub id)."""
    path = Path(location) / "config.json"
    return json.loads(path.read_text()) if path.is_file() else LLAMA_2_7B


def profile_causal_lm(config: dict[str, Any], tokens: int, rank: int, targets: tuple[str, ...]) -> TextProfile:
    return _profile(json.dumps(config, sort_keys=True), tokens, rank, tuple(targets))


@lru_cache(maxsize=64)
def _profile(config_json: str, tokens: int, rank: int, targets: tuple[str, ...]) -> TextProfile:
    key = {"config": config_json, "tokens": tokens, "rank": rank, "targets": list(targets)}
    return TextProfile(**disk_cached("causal-lm", key, lambda: asdict(_measure(config_json, tokens, rank, targets))))


def _measure(config_json: str, tokens: int, rank: int, targets: tuple[str, ...]) -> TextProfile:
    import torch
    from accelerate import init_empty_weights
    from peft import LoraConfig, get_peft_model
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import AutoConfig, AutoModelForCausalLM

    raw = json.loads(config_json)
    config = AutoConfig.for_model(raw.get("model_type", "llama"), **{k: v for k, v in raw.items()
                                                                    if k != "model_type"})
    config._attn_implementation = "sdpa"
    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(config)
    model.requires_grad_(False)
    model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", r=rank, lora_alpha=rank,
                                             target_modules=list(targets)))
    ids = torch.zeros((1, tokens), dtype=torch.long, device="meta")

    def saved(checkpointing: bool) -> int:
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.train()
        with causal_kernel(model), memory_efficient_attention():
            kept = saved_bytes(model, lambda: model(input_ids=ids, labels=ids, use_cache=False))
        if checkpointing:
            model.gradient_checkpointing_disable()
        return kept

    full = saved(False)
    layers = raw["num_hidden_layers"]
    checkpointed = saved(True) + full // max(layers, 1)  # layer inputs, plus one layer recomputed at the peak
    with causal_kernel(model), torch.no_grad(), FlopCounterMode(display=False) as flops:
        model(input_ids=ids, use_cache=False)
    lora = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return TextProfile(full, checkpointed, flops.get_total_flops(),
                       sum(p.numel() for p in model.parameters()) - lora, lora)


def causal_kernel(model: Any) -> Any:
    """Attention as the causal kernel, with no mask built: what a full row of tokens runs (and the meta
    device cannot inspect a mask's values to decide so)."""
    import sys
    from unittest import mock

    decoder = model.get_base_model().model
    return mock.patch.object(sys.modules[type(decoder).__module__], "create_causal_mask", lambda **_: None)


def estimate_text_peak_memory(config: dict[str, Any], shape: TextShape, device: str) -> MemoryEstimate:
    """Peak bytes of a text training run: device memory on 'cuda', process RSS on 'cpu'."""
    profile = profile_causal_lm(config, shape.tokens, shape.rank, shape.target_modules)
    half = shape.precision in {"fp16", "bf16"}
    per_row = profile.checkpointed_bytes if shape.gradient_checkpointing else profile.activation_bytes
    parts = {
        "model_weights": profile.model_params * (2 if half else 4),
        "lora_state": profile.lora_params * 16,
        "activations": int(per_row * shape.batch_size * (0.5 if half else 1.0) * TEXT_ACTIVATION_FACTOR),
        "runtime": CPU_RUNTIME_BYTES if device == "cpu" else GPU_RUNTIME_BYTES,
    }
    return MemoryEstimate(sum(parts.values()), parts)


def text_shape(spec: JobSpec, config: dict[str, Any], batch_size: int, precision: str,
               checkpointing: bool) -> TextShape:
    tokens = spec.training.max_length or config.get("max_position_embeddings") or 2048
    return TextShape(tokens, batch_size, precision, checkpointing, spec.model.lora_rank,
                     tuple(spec.model.target_modules))


def recommend_text(spec: JobSpec, gpu: GpuType, config: dict[str, Any]) -> Recommendation:
    """As :func:`~lora_tasks.scheduling.recommend.recommend` for images: the largest batch that fits without
    gradient checkpointing, checkpointing only when batch 1 does not fit without it."""
    training = spec.training
    device = "cuda" if gpu.is_gpu else "cpu"
    precision = training.mixed_precision
    if precision == "auto":
        precision = ("bf16" if gpu.bf16 else "fp16") if gpu.is_gpu else "no"
    batch = training.batch_size if training.batch_size != "auto" else 1
    base = text_shape(spec, config, batch, precision, training.gradient_checkpointing is True)

    def estimate(shape: TextShape) -> MemoryEstimate:
        return estimate_text_peak_memory(config, shape, device)

    if not gpu.is_gpu:
        return Recommendation(gpu.name, base, estimate(base), True)
    budget = gpu.memory_bytes * HEADROOM
    checkpointing = [training.gradient_checkpointing] if training.gradient_checkpointing != "auto" else [False, True]
    batches = [training.batch_size] if training.batch_size != "auto" else list(BATCH_SIZES)
    for ckpt in checkpointing:
        fitting = [s for b in batches if estimate(s := replace(base, batch_size=b, gradient_checkpointing=ckpt))
                   .total_bytes <= budget]
        if fitting:
            chosen = max(fitting, key=lambda s: s.batch_size)
            return Recommendation(gpu.name, chosen, estimate(chosen), True)
    wanted = replace(base, gradient_checkpointing=checkpointing[-1])
    options = [("gradient_checkpointing: true", replace(wanted, gradient_checkpointing=True))]
    options += [(f"max_length: {n} with batch_size: 1 and gradient_checkpointing: true",
                 replace(wanted, tokens=n, batch_size=1, gradient_checkpointing=True))
                for n in (4096, 2048, 1024, 512) if n < wanted.tokens]
    advice = next((f"set training_config.{text} (estimated {estimate(o).gib:.1f} GiB), or use a GPU type with more "
                   "memory" for text, o in options if estimate(o).total_bytes <= budget),
                  "use a GPU type with more memory")
    return Recommendation(gpu.name, wanted, estimate(wanted), False, advice)

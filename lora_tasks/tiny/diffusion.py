"""Random-weight Stable Diffusion pipelines of the real classes (UNet2DConditionModel, AutoencoderKL,
CLIPTextModel, a real CLIP BPE tokenizer over a byte-level vocabulary), saved with ``save_pretrained``
so that ``StableDiffusionPipeline.from_pretrained`` loads them like any other. ``tiny`` trains 50 steps
in seconds on a laptop CPU; ``tiny-m`` and ``tiny-l`` widen the memory model's calibration range;
``sd15`` has the published Stable Diffusion 1.5 shapes (about 860 M + 123 M + 84 M parameters);
``tiny-sd2`` and ``tiny-sd2-v`` are tiny with what tells SD 2.x apart (1024-wide text embeddings from a
GELU text encoder, linear attention projections), predicting the noise as SD 2.x-base does, or the
velocity as the 768-v models do."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from lora_tasks.scheduling.sd15 import SD15

SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "prediction_type": "epsilon",
}
"""Stable Diffusion 1.x's noise schedule."""

ARCHITECTURES: dict[str, dict[str, dict[str, Any]]] = {
    "tiny": {
        "unet": {
            "sample_size": 16,
            "in_channels": 4,
            "out_channels": 4,
            "block_out_channels": [32, 64],
            "layers_per_block": 1,
            "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
            "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
            "cross_attention_dim": 32,
            "attention_head_dim": 8,
            "norm_num_groups": 32,
        },
        "vae": {
            "sample_size": 64,
            "in_channels": 3,
            "out_channels": 3,
            "latent_channels": 4,
            "block_out_channels": [32, 64, 64],
            "layers_per_block": 1,
            "down_block_types": ["DownEncoderBlock2D"] * 3,
            "up_block_types": ["UpDecoderBlock2D"] * 3,
            "norm_num_groups": 32,
        },
        "text_encoder": {
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_attention_heads": 4,
            "num_hidden_layers": 2,
            "max_position_embeddings": 77,
            "projection_dim": 32,
            "hidden_act": "quick_gelu",
        },
    },
    "tiny-m": {  # twice as wide, deeper: the middle of the memory model's calibration range
        "unet": {
            "sample_size": 16, "in_channels": 4, "out_channels": 4, "block_out_channels": [64, 128],
            "layers_per_block": 2, "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
            "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D"], "cross_attention_dim": 64,
            "attention_head_dim": 8, "norm_num_groups": 32,
        },
        "vae": {
            "sample_size": 64, "in_channels": 3, "out_channels": 3, "latent_channels": 4,
            "block_out_channels": [32, 64, 64], "layers_per_block": 1, "down_block_types": ["DownEncoderBlock2D"] * 3,
            "up_block_types": ["UpDecoderBlock2D"] * 3, "norm_num_groups": 32,
        },
        "text_encoder": {
            "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4, "num_hidden_layers": 2,
            "max_position_embeddings": 77, "projection_dim": 64, "hidden_act": "quick_gelu",
        },
    },
    "tiny-l": {  # three levels and SD-like channel ratios, about 30 M UNet parameters
        "unet": {
            "sample_size": 32, "in_channels": 4, "out_channels": 4, "block_out_channels": [128, 256, 256],
            "layers_per_block": 2, "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
            "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"], "cross_attention_dim": 128,
            "attention_head_dim": 8, "norm_num_groups": 32,
        },
        "vae": {
            "sample_size": 128, "in_channels": 3, "out_channels": 3, "latent_channels": 4,
            "block_out_channels": [32, 64, 64], "layers_per_block": 1, "down_block_types": ["DownEncoderBlock2D"] * 3,
            "up_block_types": ["UpDecoderBlock2D"] * 3, "norm_num_groups": 32,
        },
        "text_encoder": {
            "hidden_size": 128, "intermediate_size": 256, "num_attention_heads": 4, "num_hidden_layers": 2,
            "max_position_embeddings": 77, "projection_dim": 128, "hidden_act": "quick_gelu",
        },
    },
    "sd15": SD15,  # the published shapes, for benchmarks
}
_SD2_TINY: dict[str, dict[str, Any]] = {
    "unet": {**ARCHITECTURES["tiny"]["unet"], "cross_attention_dim": 1024, "use_linear_projection": True,
             "attention_head_dim": [2, 4]},
    "vae": ARCHITECTURES["tiny"]["vae"],
    "text_encoder": {"hidden_size": 1024, "intermediate_size": 64, "num_attention_heads": 16, "num_hidden_layers": 1,
                     "max_position_embeddings": 77, "projection_dim": 512, "hidden_act": "gelu"},
}
ARCHITECTURES["tiny-sd2"] = _SD2_TINY
ARCHITECTURES["tiny-sd2-v"] = {**_SD2_TINY, "scheduler": {"prediction_type": "v_prediction"}}


def byte_level_symbols() -> list[str]:
    """GPT-2/CLIP's reversible map of the 256 byte values to printable characters (transformers' own), in
    byte order."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    symbols = bytes_to_unicode()
    return [symbols[b] for b in range(256)]


def write_clip_tokenizer_files(folder: Path) -> Path:
    """vocab.json and merges.txt for a CLIP BPE tokenizer whose tokens are single bytes."""
    symbols = byte_level_symbols()
    vocab_list = symbols + [s + "</w>" for s in symbols] + ["<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(vocab_list)}, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return folder


def build_pipeline(arch: str = "tiny", seed: int = 0) -> Any:
    """A StableDiffusionPipeline of the named architecture with seeded random weights."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    shapes = ARCHITECTURES[arch]
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = CLIPTokenizer.from_pretrained(write_clip_tokenizer_files(Path(tmp)), model_max_length=77)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**shapes["unet"])
    torch.manual_seed(seed + 1)
    vae = AutoencoderKL(**shapes["vae"])
    torch.manual_seed(seed + 2)
    text_config = {"vocab_size": len(tokenizer), **shapes["text_encoder"]}
    text_encoder = CLIPTextModel(CLIPTextConfig(
        **text_config,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    ))
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=DDIMScheduler(**{**SCHEDULER_CONFIG, **shapes.get("scheduler", {})}),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def save_pipeline(out: Path, arch: str = "tiny", seed: int = 0) -> Path:
    """Build and save a pipeline in the diffusers folder format (safetensors weights)."""
    build_pipeline(arch, seed).save_pretrained(out, safe_serialization=True)
    return out



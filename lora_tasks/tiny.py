"""Offline base models: real Stable Diffusion architectures with random, seeded weights.

Nothing may download weights here, yet the loading, training and export code must be the
real thing. So we build pipelines of the real classes (UNet2DConditionModel, AutoencoderKL,
CLIPTextModel, a real CLIP BPE tokenizer over a byte-level vocabulary) and save them with
``save_pretrained``; ``StableDiffusionPipeline.from_pretrained`` loads them like any other.

``tiny`` trains 50 steps in seconds on a laptop CPU; ``sd15`` has the published Stable
Diffusion 1.5 shapes (about 860 M + 123 M + 84 M parameters) for benchmarks.

    python -m lora_tasks.tiny model OUT_DIR [--arch tiny|sd15] [--seed 0]
    python -m lora_tasks.tiny blip OUT_DIR [--seed 0]           # a tiny BLIP captioner
    python -m lora_tasks.tiny dataset OUT_DIR [--count 24] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

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
    # Stable Diffusion 1.5's published component configs.
    "sd15": {
        "unet": {
            "sample_size": 64,
            "in_channels": 4,
            "out_channels": 4,
            "block_out_channels": [320, 640, 1280, 1280],
            "layers_per_block": 2,
            "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
            "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
            "cross_attention_dim": 768,
            "attention_head_dim": 8,
            "norm_num_groups": 32,
            "downsample_padding": 1,
            "flip_sin_to_cos": True,
            "freq_shift": 0,
            "mid_block_scale_factor": 1,
            "norm_eps": 1e-5,
            "act_fn": "silu",
        },
        "vae": {
            "sample_size": 512,
            "in_channels": 3,
            "out_channels": 3,
            "latent_channels": 4,
            "block_out_channels": [128, 256, 512, 512],
            "layers_per_block": 2,
            "down_block_types": ["DownEncoderBlock2D"] * 4,
            "up_block_types": ["UpDecoderBlock2D"] * 4,
            "norm_num_groups": 32,
            "act_fn": "silu",
        },
        "text_encoder": {  # CLIP ViT-L/14's text tower
            "hidden_size": 768,
            "intermediate_size": 3072,
            "num_attention_heads": 12,
            "num_hidden_layers": 12,
            "max_position_embeddings": 77,
            "projection_dim": 768,
            "hidden_act": "quick_gelu",
            "vocab_size": 49408,
        },
    },
}


def byte_level_symbols() -> list[str]:
    """GPT-2/CLIP's reversible map of the 256 byte values to printable unicode characters."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    symbols = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in symbols:
            symbols[b] = chr(256 + extra)
            extra += 1
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
        scheduler=DDIMScheduler(**SCHEDULER_CONFIG),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


CAPTION_WORDS = """a the of in on with and near under over two three small large red blue green yellow white black
teal orange purple striped round square triangle circle shape shapes sky sunset sea tree trees house street man woman
dog cat bird car boat flower flowers mountain field light dark bright pattern painting drawing photo picture style
outline stripes background sitting standing flying""".split()  # noqa: SIM905 - reads better as prose
"""The tiny captioner's vocabulary: a random model over real words still yields readable captions."""


def build_blip(out: Path, seed: int = 0) -> Path:
    """A tiny random BLIP captioner (BlipForConditionalGeneration + BlipProcessor) saved to ``out``.

    Random BLIP weights make near-constant captions unless the vision tower's init is
    widened (its default 1e-10 zeroes the image features), hence the initializer ranges.
    """
    import torch
    from transformers import (
        BertTokenizer,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessorPil,  # the plain class needs torchvision
        BlipProcessor,
    )

    out.mkdir(parents=True, exist_ok=True)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]"]
    (out / "vocab.txt").write_text("\n".join(specials + CAPTION_WORDS) + "\n")
    tokenizer = BertTokenizer(vocab=str(out / "vocab.txt"), bos_token="[DEC]", model_max_length=64)
    processor = BlipProcessor(image_processor=BlipImageProcessorPil(size={"height": 32, "width": 32}),
                              tokenizer=tokenizer)
    shape = {"hidden_size": 32, "intermediate_size": 64, "projection_dim": 32, "num_hidden_layers": 2,
             "num_attention_heads": 4}
    text = {**shape, "vocab_size": len(tokenizer), "max_position_embeddings": 64, "initializer_range": 0.1,
            "bos_token_id": tokenizer.convert_tokens_to_ids("[DEC]"), "sep_token_id": tokenizer.sep_token_id,
            "eos_token_id": tokenizer.sep_token_id, "pad_token_id": tokenizer.pad_token_id}
    vision = {**shape, "image_size": 32, "patch_size": 8, "initializer_range": 0.02}
    torch.manual_seed(seed)
    model = BlipForConditionalGeneration(BlipConfig(text_config=text, vision_config=vision, projection_dim=32,
                                                    image_text_hidden_size=32, initializer_range=0.1))
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def save_pipeline(out: Path, arch: str = "tiny", seed: int = 0) -> Path:
    """Build and save a pipeline in the diffusers folder format (safetensors weights)."""
    build_pipeline(arch, seed).save_pretrained(out, safe_serialization=True)
    return out


def main(argv: list[str] | None = None) -> int:
    from lora_tasks.sample_data import make_style_dataset

    parser = argparse.ArgumentParser(prog="python -m lora_tasks.tiny", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    model = sub.add_parser("model", help="build and save a random-weight pipeline")
    model.add_argument("out", type=Path)
    model.add_argument("--arch", choices=sorted(ARCHITECTURES), default="tiny")
    model.add_argument("--seed", type=int, default=0)
    blip = sub.add_parser("blip", help="build and save a tiny random BLIP image captioner")
    blip.add_argument("out", type=Path)
    blip.add_argument("--seed", type=int, default=0)
    data = sub.add_parser("dataset", help="write a small captioned image dataset with one visual style")
    data.add_argument("out", type=Path)
    data.add_argument("--count", type=int, default=24)
    data.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.what == "model":
        print(save_pipeline(args.out, args.arch, args.seed))
    elif args.what == "blip":
        print(build_blip(args.out, args.seed))
    else:
        print(make_style_dataset(args.out, args.count, args.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

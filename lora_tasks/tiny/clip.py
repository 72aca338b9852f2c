"""A tiny random CLIP model, saved like a real one, so that the evaluate stage's CLIP score runs offline."""

from __future__ import annotations

import tempfile
from pathlib import Path

from lora_tasks.tiny.diffusion import write_clip_tokenizer_files

IMAGE_SIZE = 32


def build_clip(out: Path, seed: int = 0) -> Path:
    """A tiny random CLIPModel with its tokenizer (the real BPE class over a byte-level vocabulary) and image
    processor, saved to ``out`` so that ``CLIPModel``/``CLIPProcessor.from_pretrained(out)`` load it."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPProcessor, CLIPTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = CLIPTokenizer.from_pretrained(write_clip_tokenizer_files(Path(tmp)), model_max_length=77)
    images = CLIPImageProcessorPil(size={"shortest_edge": IMAGE_SIZE},
                                   crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    shape = {"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2}
    text = {**shape, "vocab_size": len(tokenizer), "max_position_embeddings": 77,
            "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id}
    vision = {**shape, "image_size": IMAGE_SIZE, "patch_size": 8}
    torch.manual_seed(seed)
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=32))
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(out)
    return out

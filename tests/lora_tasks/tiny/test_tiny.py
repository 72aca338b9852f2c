"""The offline base models are real pipelines: they load, tokenize, generate and convert."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lora_tasks.tiny.__main__ import main
from lora_tasks.tiny.diffusion import byte_level_symbols


def test_pipeline_loads_and_generates(tiny_model: Path) -> None:
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(tiny_model)
    image = pipe("sks, a teal circle", num_inference_steps=2, height=64, width=64,
                 generator=torch.Generator().manual_seed(0), output_type="np").images[0]
    assert image.shape == (64, 64, 3)
    assert np.isfinite(image).all()
    assert sum(p.numel() for p in pipe.unet.parameters()) < 2_000_000


def test_tokenizer_is_a_real_clip_bpe(tiny_model: Path) -> None:
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(tiny_model, subfolder="tokenizer")
    ids = tokenizer("a cat", padding="max_length", max_length=tokenizer.model_max_length).input_ids
    assert len(ids) == 77
    assert ids[0] == tokenizer.bos_token_id
    assert tokenizer.decode(ids, skip_special_tokens=True) == "a cat"
    assert len(set(byte_level_symbols())) == 256


def test_weights_are_seeded(tmp_path: Path) -> None:
    from lora_tasks.tiny.diffusion import build_pipeline

    a, b = build_pipeline("tiny", seed=3), build_pipeline("tiny", seed=3)
    assert all(torch.equal(x, y) for x, y in zip(a.unet.parameters(), b.unet.parameters(), strict=True))


def test_single_file_round_trips_exactly(tiny_model: Path, single_file: Path) -> None:
    from diffusers import StableDiffusionPipeline

    folder = StableDiffusionPipeline.from_pretrained(tiny_model)
    loaded = StableDiffusionPipeline.from_single_file(single_file, config=str(tiny_model), safety_checker=None,
                                                      requires_safety_checker=False)
    for part in ("unet", "vae", "text_encoder"):
        expected, actual = getattr(folder, part).state_dict(), getattr(loaded, part).state_dict()
        assert expected.keys() == actual.keys()
        assert all(torch.equal(expected[k], actual[k]) for k in expected), part


def test_cli_writes_model_and_dataset(tmp_path: Path) -> None:
    assert main(["dataset", str(tmp_path / "data"), "--count", "6"]) == 0
    images = sorted((tmp_path / "data" / "3_sks").glob("*.png"))
    captions = sorted((tmp_path / "data" / "3_sks").glob("*.txt"))
    assert len(images) == 6 and len(captions) == 4
    with pytest.raises(SystemExit):
        main(["model", str(tmp_path / "m"), "--arch", "sdxl"])
    assert not (tmp_path / "m").exists()

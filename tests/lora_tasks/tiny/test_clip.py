"""The tiny CLIP model loads offline like a real one and scores images the way the evaluate stage does."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from lora_tasks.tiny.__main__ import main


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from lora_tasks.tiny.clip import build_clip

    return build_clip(tmp_path_factory.mktemp("clip") / "tiny-clip")


def test_it_loads_with_the_standard_classes(clip: Path) -> None:
    import torch
    from transformers import CLIPModel, CLIPProcessor

    model, processor = CLIPModel.from_pretrained(clip), CLIPProcessor.from_pretrained(clip)
    inputs = processor(text=["a teal circle", "a red square"], images=[Image.new("RGB", (64, 48), "teal")] * 2,
                       return_tensors="pt", padding=True)
    with torch.no_grad():
        output = model(**inputs)
    assert output.logits_per_image.shape == (2, 2) and torch.isfinite(output.logits_per_image).all()


def test_scores_are_per_image_in_range_and_repeatable(clip: Path) -> None:
    from lora_tasks.train.clip_score import ClipScorer

    scorer = ClipScorer(str(clip), "cpu")
    images = [Image.new("RGB", (64, 64), colour) for colour in ("teal", "red", "white")]
    texts = ["a teal circle", "a red square", "sks, " + "a long prompt " * 40]  # longer than CLIP's window
    scores = scorer.scores(images, texts)
    assert len(scores) == 3 and all(0.0 <= s <= 100.0 for s in scores)
    assert scorer.scores(images, texts) == scores
    assert len(set(scores)) > 1, "a random model still tells inputs apart"


def test_the_command_line_builds_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["clip", str(tmp_path / "clip"), "--seed", "1"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "clip")
    assert (tmp_path / "clip" / "config.json").is_file() and (tmp_path / "clip" / "model.safetensors").is_file()

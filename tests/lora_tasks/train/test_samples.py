"""The eval report's parts that need no model: which prompts are sampled, the grid's layout, the loss
curve, and the spec keys that configure them."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lora_tasks.errors import JobSpecError
from lora_tasks.spec.loading import parse_job_spec
from lora_tasks.spec.schema import EvalSection
from lora_tasks.train.loss_curve import DPI, FIGSIZE, plot_loss_curve
from lora_tasks.train.sample_grid import GAP, LABEL_WIDTH, cell_origin, column_width, sample_grid, text_top
from lora_tasks.train.samples import sample_prompts, without_trigger
from tests.conftest import base_job


@pytest.mark.parametrize(("prompt", "bare"), [
    ("sks, a teal circle", "a teal circle"),
    ("a teal circle, sks", "a teal circle"),
    ("a sks teal circle", "a teal circle"),
    ("asks for a teal circle", "asks for a teal circle"),
    ("sks", ""),
])
def test_the_trigger_word_is_removed_as_a_whole_word(prompt: str, bare: str) -> None:
    assert without_trigger(prompt, "sks") == bare


@pytest.mark.parametrize(("captions", "section", "trigger", "expected"), [
    (["sks, a circle", "sks, a circle", "sks, a square", "sks, a star"], EvalSection(max_prompts=2), "sks",
     ["sks, a circle", "a circle", "sks, a square", "a square"]),
    (["a circle"], EvalSection(), None, ["a circle"]),
    (["", ""], EvalSection(), "sks", ["sks"]),
    (["sks, a circle"], EvalSection(prompts=["sks, a red fox", "a house"]), "sks",
     ["sks, a red fox", "a red fox", "a house"]),
])
def test_prompts_are_captions_or_configured_each_also_without_the_trigger(
        captions: list[str], section: EvalSection, trigger: str | None, expected: list[str]) -> None:
    prompts, note = sample_prompts(captions, section, trigger)
    assert note is None
    assert [p.text for p in prompts] == expected
    assert [p.seed for p in prompts] == list(range(len(expected)))
    assert [p.with_trigger for p in prompts] == [bool(trigger) and "sks" in p for p in expected]


def test_no_prompts_says_why_and_how_to_fix_it() -> None:
    prompts, note = sample_prompts(["", ""], EvalSection(seed=5), None)
    assert prompts == [] and note is not None
    assert "no sample images were made" in note and "eval.prompts" in note


def test_seeds_start_at_the_configured_seed() -> None:
    prompts, _ = sample_prompts(["sks, a circle"], EvalSection(seed=7), "sks")
    assert [p.seed for p in prompts] == [7, 8]


@pytest.mark.parametrize(("section", "key"), [
    ({"prompts": []}, "eval.prompts"),
    ({"prompts": ["  "]}, "eval.prompts[0]"),
    ({"min_clip_score": 20}, "eval.min_clip_score"),
    ({"sample_size": 60}, "eval.sample_size"),
    ({"sample_steps": 0}, "eval.sample_steps"),
])
def test_bad_eval_keys_are_refused_by_name(section: dict, key: str, tmp_path: Path) -> None:
    job = base_job(tmp_path, tmp_path, tmp_path / "out")
    job["eval"] = section
    with pytest.raises(JobSpecError) as caught:
        parse_job_spec(job)
    assert f"{key}:" in str(caught.value)


def squares(count: int, size: int, offset: int) -> list[Image.Image]:
    return [Image.new("RGB", (size, size), (40 * i + offset, 100, 200 - 30 * i)) for i in range(count)]


def test_the_grid_has_a_column_per_prompt_two_rows_and_the_prompts_under_them() -> None:
    base, lora = squares(3, 64, 0), squares(3, 64, 20)
    prompts = ["sks, a teal circle on a striped sunset", "a teal circle", "x"]
    grid = sample_grid(base, lora, prompts)
    assert grid.width == LABEL_WIDTH + 3 * column_width(64)
    assert grid.height > text_top((64, 64)) + GAP
    pixels = np.asarray(grid)
    for column in range(3):
        for row, images in enumerate((base, lora)):
            x, y = cell_origin(column, row, (64, 64))
            assert (pixels[y:y + 64, x:x + 64] == np.asarray(images[column])).all()
        left = LABEL_WIDTH + column * column_width(64)
        text = pixels[text_top((64, 64)):, left:left + column_width(64)]
        assert (text < 128).any(), f"no prompt text under column {column}"
    assert (pixels[:, :LABEL_WIDTH] < 128).any(), "no row labels"
    longer = sample_grid(base, lora, [prompts[0] * 3, *prompts[1:]])
    assert longer.height > grid.height, "a longer prompt wraps onto more lines"


def test_the_grid_is_deterministic() -> None:
    def png() -> bytes:
        buffer = io.BytesIO()
        sample_grid(squares(2, 32, 0), squares(2, 32, 9), ["a", "b c"]).save(buffer, format="png")
        return buffer.getvalue()

    assert png() == png()


def test_the_loss_curve_is_a_png_of_the_set_size(tmp_path: Path) -> None:
    metrics = tmp_path / "metrics.jsonl"
    records = [{"step": s, "loss": 1.0 / s} for s in range(1, 31)]
    metrics.write_text("".join(json.dumps(r) + "\n" for r in records) + '{"step": 31, "lo')  # torn last line
    curve = plot_loss_curve(metrics, tmp_path / "loss_curve.png")
    assert curve == {"file": "loss_curve.png", "steps": 30, "first_loss": 1.0, "last_loss": 1 / 30,
                     "min_loss": 1 / 30}
    with Image.open(tmp_path / "loss_curve.png") as image:
        assert image.format == "PNG" and image.size == (FIGSIZE[0] * DPI, FIGSIZE[1] * DPI)


@pytest.mark.parametrize(("content", "why"), [(None, "does not exist"), ("", "holds no step with a loss")])
def test_without_metrics_there_is_a_note_and_no_png(tmp_path: Path, content: str | None, why: str) -> None:
    metrics = tmp_path / "metrics.jsonl"
    if content is not None:
        metrics.write_text(content)
    curve = plot_loss_curve(metrics, tmp_path / "loss_curve.png")
    assert curve["file"] is None and why in curve["note"]
    assert not (tmp_path / "loss_curve.png").exists()

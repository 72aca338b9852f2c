"""The evaluate stage on a trained adapter: the quality gates at their defaults and configured, and every
figure of the report (samples, grid, loss curve, CLIP scores), repeatable to the pixel."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from safetensors.torch import load_file, save_file

from lora_tasks.spec.loading import parse_job_spec
from lora_tasks.spec.schema import EvalSection
from lora_tasks.train.evaluate import QualityGateError, evaluate_adapter
from lora_tasks.train.outputs import DIFFUSERS_FILE
from lora_tasks.train.sample_grid import LABEL_WIDTH, cell_origin, column_width, text_top
from tests.conftest import base_job
from tests.lora_tasks.train.test_trainer import train

pytestmark = pytest.mark.slow
DEFAULT_GATE = EvalSection().max_loss_ratio
FAST_SAMPLES = {"sample_steps": 2, "sample_size": 64, "max_prompts": 2}
SIZE = (64, 64)


@pytest.fixture(scope="module")
def held_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Images of the same style that the adapter never saw."""
    from lora_tasks.tiny.sample_data import make_style_dataset

    return make_style_dataset(tmp_path_factory.mktemp("held-out") / "sks", count=4, seed=7)


@pytest.fixture(scope="module")
def trained(tiny_model: Path, style_dataset: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("evaluate") / "out"
    return train(tiny_model, style_dataset, out, training_config={"max_steps": 24, "learning_rate": 5e-3})


@pytest.fixture(scope="module")
def clip_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from lora_tasks.tiny.clip import build_clip

    return build_clip(tmp_path_factory.mktemp("clip") / "tiny-clip")


def spec_for(tiny_model: Path, style_dataset: Path, out: Path, dataset: dict[str, Any] | None = None, **evals: Any):
    job = base_job(tiny_model, style_dataset, out)
    job["eval"] = {**FAST_SAMPLES, **evals}
    job["dataset"].update(dataset or {})
    return parse_job_spec(job)


@pytest.fixture(scope="module")
def evaluated(trained, tiny_model: Path, style_dataset: Path, held_out: Path, clip_model: Path,
              tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    out = tmp_path_factory.mktemp("evaluated")
    spec = spec_for(tiny_model, style_dataset, out / "unused", clip_model=str(clip_model))
    return evaluate_adapter(spec, trained.adapter_dir, held_out, out / "eval", device="cpu"), out / "eval"


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def test_a_trained_adapter_passes_the_default_gate(evaluated) -> None:
    report, folder = evaluated
    assert report["passed"] and report["loss_ratio"] < DEFAULT_GATE and report["images"] == 4
    assert report["compared_images"] == 4  # eval.max_compare_items is 16
    assert report["gates"] == {"max_loss_ratio": {"value": report["loss_ratio"], "limit": DEFAULT_GATE,
                                                  "passed": True}}
    assert json.loads((folder / "eval_report.json").read_text()) == report


def test_the_comparison_uses_at_most_max_compare_items(trained, tiny_model: Path, style_dataset: Path,
                                                       held_out: Path, tmp_path: Path) -> None:
    spec = spec_for(tiny_model, style_dataset, tmp_path / "unused", max_compare_items=1, prompts=["sks"])
    report = evaluate_adapter(spec, trained.adapter_dir, held_out, tmp_path / "eval", device="cpu")
    assert (report["images"], report["compared_images"]) == (4, 1)


def test_the_report_lists_every_figure(evaluated, clip_model: Path) -> None:
    report, folder = evaluated
    for key in ("base_loss", "lora_loss", "loss_ratio", "max_loss_ratio", "held_out", "images", "samples",
                "sample_grid", "loss_curve", "clip_score", "clip_model", "sampling", "gates", "timings", "notes"):
        assert key in report, key
    assert report["sampling"] == {"steps": 2, "guidance": 7.5, "size": 64, "scheduler": "DPMSolverMultistepScheduler",
                                  "seed": 0}
    assert report["clip_model"] == str(clip_model) and report["notes"] == []
    assert set(report["timings"]) >= {"load_s", "base_samples_s", "loss_s", "lora_samples_s", "clip_s", "total_s"}
    samples = report["samples"]
    assert len(samples) == 4, "two held-out captions, each with and without the trigger word"
    assert [s["with_trigger"] for s in samples] == [True, False, True, False]
    assert all(s["prompt"].startswith("sks, ") == s["with_trigger"] for s in samples)
    assert [s["seed"] for s in samples] == [0, 1, 2, 3]
    for sample in samples:
        assert (folder / sample["base"]).is_file() and (folder / sample["lora"]).is_file()
        assert 0.0 <= sample["clip_base"] <= 100.0 and 0.0 <= sample["clip_lora"] <= 100.0
        assert sample["clip_text"] == sample["prompt"].removeprefix("sks, ")
    assert report["clip_score"] == {key: pytest.approx(np.mean([s[f"clip_{key}"] for s in samples]), abs=1e-4)
                                    for key in ("base", "lora")}
    curve = report["loss_curve"]
    assert curve["file"] == "loss_curve.png" and curve["steps"] == 24
    with Image.open(folder / "loss_curve.png") as image:
        assert image.format == "PNG" and image.size == (640, 400)


def test_the_grid_holds_base_above_lora_per_prompt_with_the_prompts(evaluated) -> None:
    report, folder = evaluated
    grid = pixels(folder / report["sample_grid"])
    samples = report["samples"]
    assert grid.shape[1] == LABEL_WIDTH + len(samples) * column_width(64)
    assert grid.shape[0] > text_top(SIZE) and (grid[text_top(SIZE):] < 128).any(), "no prompt text"
    for column, sample in enumerate(samples):
        for row, key in enumerate(("base", "lora")):
            x, y = cell_origin(column, row, SIZE)
            assert (grid[y:y + 64, x:x + 64] == pixels(folder / sample[key])).all()
        difference = np.abs(pixels(folder / sample["base"]).astype(int) - pixels(folder / sample["lora"]))
        assert difference.mean() > 1.0, f"column {column}: the LoRA changes nothing"


def test_a_rerun_gives_the_same_pixels(evaluated, trained, tiny_model: Path, style_dataset: Path, held_out: Path,
                                       clip_model: Path, tmp_path: Path) -> None:
    report, folder = evaluated
    spec = spec_for(tiny_model, style_dataset, tmp_path / "unused", clip_model=str(clip_model))
    again = evaluate_adapter(spec, trained.adapter_dir, held_out, tmp_path / "eval", device="cpu")
    assert pixels(tmp_path / "eval" / "sample_grid.png").tobytes() == pixels(folder / "sample_grid.png").tobytes()
    assert {k: v for k, v in again.items() if k != "timings"} == {k: v for k, v in report.items() if k != "timings"}


def test_a_harmful_adapter_fails_the_gate_with_both_losses(trained, tiny_model: Path, style_dataset: Path,
                                                           held_out: Path, tmp_path: Path) -> None:
    """The trained adapter with its change reversed (every up-projection negated) pushes predictions away
    from the data: the gate must refuse it. (Large random weights would not do: the UNet's output passes
    through a GroupNorm, so on the tiny model they move the held-out loss by 1-1.5% only.) Copied out of
    the trainer's folder, it has no metrics.jsonl beside it; no CLIP model is configured."""
    harmful = shutil.copytree(trained.adapter_dir, tmp_path / "harmful")
    weights = load_file(harmful / DIFFUSERS_FILE)
    save_file({k: -v if ".lora.up." in k else v for k, v in weights.items()}, harmful / DIFFUSERS_FILE)
    spec = spec_for(tiny_model, style_dataset, tmp_path / "unused")
    with pytest.raises(QualityGateError, match="it is not published") as caught:
        evaluate_adapter(spec, harmful, held_out, tmp_path / "eval", device="cpu")
    report = json.loads((tmp_path / "eval" / "eval_report.json").read_text())
    assert report["passed"] is False and report["loss_ratio"] > DEFAULT_GATE
    assert f"from {report['base_loss']:.4f} to {report['lora_loss']:.4f}" in str(caught.value)
    assert f"x{report['loss_ratio']:.3f}, gate x{DEFAULT_GATE}" in str(caught.value)
    assert report["clip_score"] is None and "no CLIP score: eval.clip_model is not set" in report["notes"]
    assert report["loss_curve"]["file"] is None and not (tmp_path / "eval" / "loss_curve.png").exists()
    assert any("no loss curve" in note and "does not exist" in note for note in report["notes"])
    assert len(report["samples"]) == 4 and (tmp_path / "eval" / "sample_grid.png").is_file()


def test_the_clip_gate_fails_with_the_scores_in_the_message(trained, tiny_model: Path, style_dataset: Path,
                                                            held_out: Path, clip_model: Path, tmp_path: Path) -> None:
    spec = spec_for(tiny_model, style_dataset, tmp_path / "unused", clip_model=str(clip_model), min_clip_score=99.0,
                    max_prompts=1)
    with pytest.raises(QualityGateError) as caught:
        evaluate_adapter(spec, trained.adapter_dir, held_out, tmp_path / "eval", device="cpu")
    report = json.loads((tmp_path / "eval" / "eval_report.json").read_text())
    clip = report["clip_score"]
    assert report["passed"] is False and report["gates"]["max_loss_ratio"]["passed"] is True
    assert report["gates"]["min_clip_score"] == {"value": clip["lora"], "limit": 99.0, "passed": False}
    message = str(caught.value)
    assert f"mean CLIP score is {clip['lora']:.2f} (base model {clip['base']:.2f})" in message
    assert "eval.min_clip_score 99.0" in message and f"{report['base_loss']:.4f}" in message


def test_without_any_prompt_the_report_says_no_samples_were_made(trained, tiny_model: Path, style_dataset: Path,
                                                                 held_out: Path, tmp_path: Path) -> None:
    """Images named by number only, without caption files, and no trigger word: nothing to prompt with."""
    unnamed = tmp_path / "unnamed"
    unnamed.mkdir()
    for number, image in enumerate(sorted(held_out.rglob("*.png"))):
        shutil.copy(image, unnamed / f"{number:03d}.png")
    spec = spec_for(tiny_model, style_dataset, tmp_path / "unused", dataset={"trigger_word": None})
    report = evaluate_adapter(spec, trained.adapter_dir, unnamed, tmp_path / "eval", device="cpu")
    assert report["passed"] and report["samples"] == [] and report["sample_grid"] is None
    assert not (tmp_path / "eval" / "sample_grid.png").exists()
    [note] = [n for n in report["notes"] if n.startswith("no sample images were made")]
    assert re.search(r"Fix: set eval\.prompts", note)

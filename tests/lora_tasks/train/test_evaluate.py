"""The quality gate on its own, at its default: a trained adapter passes it, a harmful one does not."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from lora_tasks.spec.loading import parse_job_spec
from lora_tasks.spec.schema import EvalSection
from lora_tasks.train.evaluate import QualityGateError, evaluate_adapter
from lora_tasks.train.outputs import DIFFUSERS_FILE
from tests.conftest import base_job
from tests.lora_tasks.train.test_trainer import train

pytestmark = pytest.mark.slow
DEFAULT_GATE = EvalSection().max_loss_ratio


@pytest.fixture(scope="module")
def held_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Images of the same style that the adapter never saw."""
    from lora_tasks.tiny.sample_data import make_style_dataset

    return make_style_dataset(tmp_path_factory.mktemp("held-out") / "sks", count=4, seed=7)


@pytest.fixture(scope="module")
def trained(tiny_model: Path, style_dataset: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("evaluate") / "out"
    return train(tiny_model, style_dataset, out, training_config={"max_steps": 24, "learning_rate": 5e-3})


def spec_for(tiny_model: Path, style_dataset: Path, out: Path):
    return parse_job_spec(base_job(tiny_model, style_dataset, out))


def test_a_trained_adapter_passes_the_default_gate(trained, tiny_model: Path, style_dataset: Path, held_out: Path,
                                                   tmp_path: Path) -> None:
    spec = spec_for(tiny_model, style_dataset, tmp_path / "unused")
    assert spec.eval.max_loss_ratio == DEFAULT_GATE
    report = evaluate_adapter(spec, trained.adapter_dir, held_out, tmp_path / "eval", device="cpu")
    assert report["passed"] and report["loss_ratio"] < DEFAULT_GATE and report["images"] == 4
    assert json.loads((tmp_path / "eval" / "eval_report.json").read_text()) == report


def test_a_harmful_adapter_fails_the_gate(trained, tiny_model: Path, style_dataset: Path, held_out: Path,
                                          tmp_path: Path) -> None:
    """The trained adapter with its change reversed (every up-projection negated) pushes predictions away
    from the data: the gate must refuse it. (Large random weights would not do: the UNet's output passes
    through a GroupNorm, so on the tiny model they move the held-out loss by 1-1.5% only.)"""
    harmful = shutil.copytree(trained.adapter_dir, tmp_path / "harmful")
    weights = load_file(harmful / DIFFUSERS_FILE)
    save_file({k: -v if ".lora.up." in k else v for k, v in weights.items()}, harmful / DIFFUSERS_FILE)
    spec = spec_for(tiny_model, style_dataset, tmp_path / "unused")
    with pytest.raises(QualityGateError, match="it is not published"):
        evaluate_adapter(spec, harmful, held_out, tmp_path / "eval", device="cpu")
    report = json.loads((tmp_path / "eval" / "eval_report.json").read_text())
    assert report["passed"] is False and report["loss_ratio"] > DEFAULT_GATE

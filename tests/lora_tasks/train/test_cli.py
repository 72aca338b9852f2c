"""The CLI: bad input exits 2 with the message and no traceback; success prints where things are."""

from __future__ import annotations

from pathlib import Path

import pytest

from lora_tasks.train.__main__ import main

SEED = Path(__file__).parents[3] / "include" / "jobs" / "seed.yaml"


def test_seed_yaml_without_its_checkpoint_names_the_path(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["--config", str(SEED), "--dataset", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "model_config.base_model" in err and "v1-5-pruned.safetensors" in err and "does not exist" in err
    assert "Traceback" not in err


def test_a_missing_base_model_and_dataset_are_reported_together_under_the_spec_file(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["--config", str(SEED), "--dataset", str(tmp_path / "not-uploaded")]) == 2
    err = capsys.readouterr().err
    assert f"{SEED} has 2 problems:" in err
    assert "  - model_config.base_model: " in err and "v1-5-pruned.safetensors" in err
    assert f"  - dataset.uri: dataset {tmp_path / 'not-uploaded'} does not exist. Fix: set dataset.uri" in err


def test_bad_override_is_reported(capsys: pytest.CaptureFixture[str], write_job) -> None:
    assert main(["--config", str(write_job()), "--set", "training_config.learning_rate=0"]) == 2
    assert "training_config.learning_rate: got 0" in capsys.readouterr().err


@pytest.mark.slow
def test_success_prints_adapter_and_figures(capsys: pytest.CaptureFixture[str], write_job) -> None:
    assert main(["--config", str(write_job()), "--set", "training_config.max_steps=2"]) == 0
    out = capsys.readouterr().out
    for line in ("adapter:", "pytorch_lora_weights.safetensors", "metrics:", "train loss:", "fixed-noise loss",
                 "peak memory:"):
        assert line in out

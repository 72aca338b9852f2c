"""Exact resume: a run killed with SIGKILL and restarted ends bitwise equal to an uninterrupted one.

The shape follows accelerate's checkpointing tests: seed, train, kill, resume, compare
numbers (not file names). Dropout on the LoRA path, caption dropout and gradient
accumulation are on, so every random stream and the data order must be restored exactly.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

pytestmark = pytest.mark.slow

STEPS = 16
RANDOM_EVERYWHERE = {
    "model_config": {"lora_dropout": 0.1},
    "dataset": {"caption_dropout": 0.25},
    "training_config": {"max_steps": STEPS, "save_steps": 4, "gradient_accumulation_steps": 2,
                        "lr_scheduler": "cosine", "checkpoints_total_limit": 3},
}


def command(config: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "lora_tasks.train", "--config", str(config), "--output", str(out)]


def run(config: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command(config, out), capture_output=True, text=True, timeout=300)


def kill_after_checkpoint(config: Path, out: Path, step: int) -> None:
    """Start a run, SIGKILL it once the checkpoint at ``step`` is complete."""
    process = subprocess.Popen(command(config, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = out / "checkpoints" / f"step-{step:08d}" / "state.json"
    deadline = time.monotonic() + 240
    while not state.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert state.exists(), "the run ended before reaching the checkpoint"
    assert not (out / "adapter").exists()


def weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(out / "adapter" / "pytorch_lora_weights.safetensors")


@pytest.mark.parametrize(("logging_steps", "logged"), [
    (None, list(range(1, STEPS + 1))),
    (3, [3, 4, 6, 8, 9, 12, 15, 16]),  # every 3rd step, and at every checkpoint (4, 8, 12, 16)
])
def test_killed_run_resumes_to_identical_weights(write_job, tmp_path: Path, logging_steps: int | None,
                                                 logged: list[int]) -> None:
    config = write_job(**{**RANDOM_EVERYWHERE, "training_config": {**RANDOM_EVERYWHERE["training_config"],
                                                                   "logging_steps": logging_steps}})
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert run(config, straight).returncode == 0

    kill_after_checkpoint(config, killed, step=8)
    half = killed / "checkpoints" / "step-00000012"  # a checkpoint torn mid-write: must be ignored
    half.mkdir(exist_ok=True)
    (half / "lora.safetensors").write_bytes(b"torn")
    (killed / "checkpoints" / ".tmp-step-00000012-1").mkdir(exist_ok=True)

    resumed = run(config, killed)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stderr and "step-00000008" in resumed.stderr
    expected, actual = weights(straight), weights(killed)
    assert expected.keys() == actual.keys()
    assert all(torch.equal(expected[k], actual[k]) for k in expected)
    steps = [json.loads(line)["step"] for line in (killed / "metrics.jsonl").read_text().splitlines()]
    assert steps == logged
    losses = [json.loads(line)["loss"] for line in (straight / "metrics.jsonl").read_text().splitlines()]
    assert losses == [json.loads(line)["loss"] for line in (killed / "metrics.jsonl").read_text().splitlines()]


def test_resume_with_changed_data_is_refused(write_job, style_dataset: Path, tmp_path: Path) -> None:
    import shutil

    data = tmp_path / "data"
    shutil.copytree(style_dataset, data)
    config = write_job(dataset={"uri": str(data)}, training_config={"max_steps": 12, "save_steps": 4})
    out = tmp_path / "out"
    kill_after_checkpoint(config, out, step=4)
    next(data.rglob("*.txt")).write_text("a different caption")
    result = run(config, out)
    assert result.returncode == 2
    assert "different job spec or dataset" in result.stderr and "--resume none" in result.stderr
    assert not (out / "adapter").exists()


def test_a_killed_text_run_resumes_to_identical_weights(tiny_llm: Path, tmp_path: Path) -> None:
    """The same loop for text: the LoRA's dropout (the host's generator), accumulation and order restored."""
    import yaml

    from lora_tasks.tiny.text_data import write_text_dataset

    data = write_text_dataset(tmp_path / "data", count=24, layout="prompt_completion")
    config = tmp_path / "text.yaml"
    config.write_text(yaml.safe_dump({
        "job": {"name": "voice", "task": "text"}, "dataset": {"uri": str(data)},
        "model_config": {"base_model": str(tiny_llm), "lora_rank": 4, "lora_dropout": 0.1},
        "training_config": {**RANDOM_EVERYWHERE["training_config"], "batch_size": 3, "learning_rate": 3e-3,
                            "max_steps": 64},  # a fast run: room to kill it after step 8
    }))
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert run(config, straight).returncode == 0
    kill_after_checkpoint(config, killed, step=8)
    resumed = run(config, killed)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stderr
    expected, actual = (load_file(out / "adapter" / "adapter_model.safetensors") for out in (straight, killed))
    assert expected.keys() == actual.keys()
    assert all(torch.equal(expected[k], actual[k]) for k in expected)

"""``python -m lora_tasks.evaluate`` is the evaluate stage's command: it runs, and bad input exits 2 with the
message and no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lora_tasks.evaluate", *args], capture_output=True, text=True,
                          cwd=ROOT, check=False, timeout=120)


@pytest.mark.slow
def test_the_command_offers_the_evaluate_options() -> None:
    result = run("--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: python -m lora_tasks.evaluate")
    for option in ("--config", "--adapter", "--holdout", "--out", "--metrics", "--device"):
        assert option in result.stdout


@pytest.mark.slow
def test_a_bad_spec_is_reported_by_key(tmp_path: Path) -> None:
    job = tmp_path / "job.yaml"
    job.write_text("model_config: {base_model: x}\neval: {prompts: []}\n")
    result = run("--config", str(job), "--adapter", str(tmp_path), "--holdout", str(tmp_path), "--out", str(tmp_path))
    assert result.returncode == 2 and "eval.prompts:" in result.stderr and "Traceback" not in result.stderr

"""Project-wide rules: pinned dependencies, light imports on the Airflow side, a matching image."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIGHT_MODULES = ["lora_tasks.spec.schema", "lora_tasks.spec.loading", "lora_tasks.errors", "lora_tasks.spec.base_model",
                 "lora_tasks.intake.manifest", "lora_tasks.settings", "data_checks"]
"""What DAG files may import at parse time: nothing here may pull in torch or diffusers."""
HEAVY = ["torch", "diffusers", "transformers", "peft", "safetensors", "pandas", "great_expectations"]


REQUIREMENTS = ["requirements.txt", "requirements-train.txt", "requirements-dev.txt", "requirements-nsfw.txt"]


@pytest.mark.parametrize("name", REQUIREMENTS)
def test_every_requirement_is_pinned(name: str) -> None:
    for line in (ROOT / name).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-r "):
            assert re.fullmatch(r"[A-Za-z0-9_.\-\[\],]+==[\w.+]+", line), f"{name}: {line!r} is not pinned"


def test_constraints_agree_with_requirements() -> None:
    locked = dict(line.lower().split("==", 1) for line in (ROOT / "constraints.txt").read_text().splitlines()
                  if "==" in line and not line.startswith("#"))
    for name in REQUIREMENTS:
        for line in (ROOT / name).read_text().splitlines():
            if "==" in line and not line.startswith("#"):
                package, version = line.split("#")[0].strip().lower().split("==")
                assert locked.get(re.sub(r"\[.*\]", "", package)) == version, f"{package} differs in constraints.txt"


def test_light_modules_import_without_heavy_libraries() -> None:
    code = (f"import sys; import {', '.join(LIGHT_MODULES)}; "
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_training_image_matches_the_torch_pin() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    torch_pin = re.search(r"^torch==([\d.]+)$", (ROOT / "requirements-train.txt").read_text(), re.M).group(1)
    assert re.search(rf"ARG BASE_IMAGE=pytorch/pytorch:{re.escape(torch_pin)}-cuda", dockerfile)
    assert 'ENTRYPOINT ["python", "-m", "lora_tasks.train"]' in dockerfile
    assert re.search(r"^USER \d+$", dockerfile, re.M), "the image must not run as root"

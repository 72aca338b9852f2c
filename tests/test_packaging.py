"""``pip install .`` ships every package: the project's wheel, installed by pip into a fresh venv, holds
every module of lora_tasks and data_checks (the ledger's migrations included), each imports from that
install, and the wheel declares what the library needs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("lora_tasks", "data_checks")
BUILD_FILES = ("pyproject.toml", "README.md", "requirements-train.txt")


def module_names(paths: list[str]) -> set[str]:
    return {".".join(Path(p).with_suffix("").parts).removesuffix(".__init__") for p in paths if p.endswith(".py")}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built from a copy of the sources (a build writes beside them), as ``pip install .`` builds it."""
    work = tmp_path_factory.mktemp("wheel")
    for name in BUILD_FILES:
        shutil.copy(ROOT / name, work / name)
    for package in PACKAGES:
        shutil.copytree(ROOT / package, work / package, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", "-w", str(work / "dist"), str(work)], check=True, cwd=work)
    [built] = (work / "dist").glob("*.whl")
    return built


@pytest.fixture(scope="module")
def fresh_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new venv with the wheel installed by pip (its dependencies come from this venv, see below)."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                    "--disable-pip-version-check", str(wheel)], check=True)
    return venv


def test_the_wheel_holds_every_module_and_declares_its_needs(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        shipped = module_names(archive.namelist())
        [metadata] = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        requires = [line.split(": ", 1)[1] for line in archive.read(metadata).decode().splitlines()
                    if line.startswith("Requires-Dist: ")]
    sources = module_names([p.relative_to(ROOT).as_posix() for package in PACKAGES
                            for p in (ROOT / package).rglob("*.py")])
    assert sources - shipped == set()
    assert {"torch==2.13.0", "diffusers==0.42.1", "peft==0.21.2"} <= set(requires)


def test_every_module_imports_from_the_install_and_the_ledger_migrates(fresh_venv: Path, tmp_path: Path) -> None:
    code = f"""
import importlib, pkgutil, sys
from pathlib import Path
import lora_tasks, data_checks
site = Path(lora_tasks.__file__).parents[1]
names = [m.name for p in (lora_tasks, data_checks) for m in pkgutil.walk_packages(p.__path__, p.__name__ + ".")]
outside = [n for n in names if not Path(importlib.import_module(n).__file__).is_relative_to(site)]
from lora_tasks.ledger.store import Ledger, migrate
url = "sqlite:///{tmp_path / 'ledger.db'}"
migrate(url)
print(site.is_relative_to({str(fresh_venv)!r}), len(names), outside, Ledger(url).runs())
"""
    # The libraries come from this venv's site-packages on PYTHONPATH: a plain path entry, whose .pth files
    # (this project's editable install among them) are not run, so the project itself can come only from the wheel.
    env = {**os.environ, "PYTHONPATH": sysconfig.get_paths()["purelib"]}
    result = subprocess.run([str(fresh_venv / "bin" / "python"), "-c", code], capture_output=True, text=True,
                            cwd=tmp_path, env=env, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    in_venv, count, rest = result.stdout.strip().splitlines()[-1].split(" ", 2)
    assert in_venv == "True" and int(count) > 60 and rest == "[] []", result.stdout

"""``pip install .`` ships every package: a wheel built from the project holds every module of
lora_tasks and data_checks (the ledger's migrations included), and each imports from the wheel alone."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("lora_tasks", "data_checks")


def module_names(paths: list[str]) -> set[str]:
    return {".".join(Path(p).with_suffix("").parts).removesuffix(".__init__") for p in paths if p.endswith(".py")}


@pytest.fixture(scope="module")
def wheel_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, built from a copy of its sources (the build writes beside them), unpacked."""
    work = tmp_path_factory.mktemp("wheel")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, work / name)
    for package in PACKAGES:
        shutil.copytree(ROOT / package, work / package, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", "-w", str(work / "dist"), str(work)], check=True, cwd=work)
    [wheel] = (work / "dist").glob("*.whl")
    site = work / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    return site


def test_the_wheel_holds_every_module(wheel_site: Path) -> None:
    shipped = module_names([p.relative_to(wheel_site).as_posix() for p in wheel_site.rglob("*.py")])
    sources = module_names([p.relative_to(ROOT).as_posix() for package in PACKAGES
                            for p in (ROOT / package).rglob("*.py")])
    assert sources - shipped == set()


def test_every_module_imports_from_the_wheel_and_the_ledger_migrates(wheel_site: Path, tmp_path: Path) -> None:
    code = f"""
import importlib, pkgutil, sys
from pathlib import Path
sys.path.insert(0, {str(wheel_site)!r})
import lora_tasks, data_checks
names = [m.name for p in (lora_tasks, data_checks) for m in pkgutil.walk_packages(p.__path__, p.__name__ + ".")]
outside = [n for n in names if not Path(importlib.import_module(n).__file__).is_relative_to({str(wheel_site)!r})]
from lora_tasks.ledger.store import Ledger, migrate
migrate("sqlite:///{tmp_path / 'ledger.db'}")
print(len(names), outside, Ledger("sqlite:///{tmp_path / 'ledger.db'}").runs())
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    count, rest = result.stdout.strip().splitlines()[-1].split(" ", 1)
    assert int(count) > 60 and rest == "[] []", result.stdout
